"""Time to accuracy: held-out exact match that `lstm-np train` reaches with its defaults in a time budget, side
by side with a tuned PyTorch seq2seq trained on the same data for the same time; and how many optimizer
steps each peephole variant needs to reach 99%.

Part 1, budgets. For each task and budget S: `lstm-np train <data flags> --max-seconds S --seed 0` in a
subprocess (exactly what a user types; its defaults for everything else, 1 BLAS thread) and, at the same
time in this process with 1 torch thread, the PyTorch yardstick (common.TorchSeq2Seq with the settings
common.YARDSTICK, chosen on held-out training pairs by tune_yardstick.py) trained for S seconds on the same
splits and batching, evaluated on the same test set. Running the two at once means both see the same
machine load. Test exact match is greedy decoding's; `ours/torch` > 1 means lstm_np scored higher, and the
`ahead` column names the higher one. lstm_np's budget counts its validation and checkpoints too; the PyTorch
loop only trains. `CPU s` is the CPU time each side got for the whole row (start-up, data, training, test):
on a machine that other jobs load, it shows how much of the budget each side could use.

Part 2, steps to 99% (`--steps-table`): for each task, `lstm-np sweep --grid peephole=full,diagonal,none
--seeds N --steps M --eval-every 50 --stop-at 0.99`, and the same for "full" and "diagonal" without the
training recipe (--peephole-init uniform --peephole-lr-scale 1). The table gives the mean number of optimizer
steps to the first validation point at 99% exact match with its 95% interval, how many seeds got there
within M steps, and the validation exact match where the runs ended (99% or more for those that got there,
else after M steps). With --steps and no --decay-steps, `lstm-np train` keeps its learning rate constant after
the warm-up: these runs measure learning per step, not the schedule a time budget fits.

    python benchmarks/bench_time_to_accuracy.py                          # every task at 30, 60, 120 s
    python benchmarks/bench_time_to_accuracy.py --only dlfs2-date --budgets 30
    python benchmarks/bench_time_to_accuracy.py --no-budgets --steps-table --seeds 3
    python benchmarks/bench_time_to_accuracy.py --list

Prints Markdown tables and writes JSON (default benchmarks/results/bench_time_to_accuracy.json). The whole
default run takes about an hour on 2 cores; the steps table with 3 seeds about as long again.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import common  # benchmarks/common.py, next to this script
from common import DATA, shown

TASKS = {
    **{name: ["--task", name] for name in ("copy", "reverse", "sort", "addition", "dates", "number-words")},
    "dlfs2-addition": ["--train", f"{DATA}/dlfs2-addition-train.tsv", "--test", f"{DATA}/dlfs2-addition-test.tsv"],
    "dlfs2-date": ["--train", f"{DATA}/dlfs2-date-train.tsv", "--test", f"{DATA}/dlfs2-date-test.tsv"],
}
RECIPE_OFF = ["--peephole-init", "uniform", "--peephole-lr-scale", "1"]   # "full" as the cell initialises it


def run_row(task, seconds, seed, workdir, with_torch):
    """One row of part 1: `lstm-np train` in a subprocess and, at the same time in this process, the PyTorch
    yardstick on the same splits for the same seconds (one thread each, so both see the same machine)."""
    proc = common.start_lstm_np([*TASKS[task], "--max-seconds", f"{seconds:g}", "--seed", str(seed)], workdir,
                                f"{task}-{seconds:g}")
    theirs = run_torch(task, seconds, seed) if with_torch else None
    m = common.finish_lstm_np(proc)
    ours = m if "failed" in m else {k: m[k] for k in ("test_exact_match", "steps", "train_seconds", "cpu_seconds")}
    return {"task": task, "seconds": seconds, "lstm_np": ours, **({"torch": theirs} if with_torch else {})}


def run_torch(task, seconds, seed):
    from lstm_np.evaluate import evaluate
    cpu = common.cpu_seconds()
    data = common.torch_data(TASKS[task], seed=seed)
    model, steps, train_seconds = common.train_torch(data, seconds, seed=seed, **common.YARDSTICK)
    test = data.splits["test"] or data.splits["valid"]
    metrics, _ = evaluate(model, data.src_vocab, data.tgt_vocab, test, common.max_len_of(data))
    return {"test_exact_match": metrics["exact_match"], "steps": steps, "train_seconds": train_seconds,
            "cpu_seconds": round(common.cpu_seconds() - cpu, 1)}


def budgets_table(rows, with_torch):
    head = "| task | budget | lstm_np exact match | steps | CPU s |" + (
        " PyTorch exact match | steps | CPU s | ours/torch | ahead |" if with_torch else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ours, theirs = r["lstm_np"], r.get("torch")
        cells = [r["task"], f"{r['seconds']:g} s"]
        cells += ([ours["failed"], "", ""] if "failed" in ours
                  else [f"{100 * ours['test_exact_match']:.1f}%", str(ours["steps"]), f"{ours['cpu_seconds']:.0f}"])
        if with_torch:
            a, b = ours.get("test_exact_match", 0.0), theirs["test_exact_match"]
            cells += [f"{100 * b:.1f}%", str(theirs["steps"]), f"{theirs['cpu_seconds']:.0f}",
                      f"{a / b:.2f}" if b > 0 else "nan",
                      "tie" if round(1000 * a) == round(1000 * b) else "lstm_np" if a > b else "**PyTorch**"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def steps_rows(task, args, workdir):
    """Run the sweeps of part 2 for one task (folders in `workdir`); -> list of summary dicts (variant, recipe,
    runs, reached, steps)."""
    sweep_flags = [*TASKS[task], "--seeds", str(args.seeds), "--steps", str(args.max_steps), "--eval-every",
                   str(args.eval_every), "--stop-at", "0.99", "--valid-size", str(args.valid_size)]
    if args.workers:
        sweep_flags += ["--workers", str(args.workers)]
    out = []
    for label, extra in (("recipe", ["--grid", "peephole=full,diagonal,none"]),
                         ("no recipe", ["--grid", "peephole=full,diagonal"] + RECIPE_OFF)):
        folder = os.path.join(workdir, f"{task}-{label.replace(' ', '-')}")
        proc = subprocess.run([sys.executable, "-m", "lstm_np", "sweep", *sweep_flags, *extra, "--out", folder],
                              capture_output=True, text=True, cwd=workdir)
        if proc.returncode != 0:
            out.append({"task": task, "recipe": label, "failed": (proc.stderr.strip().splitlines() or ["?"])[-1]})
            continue
        out += summarise_sweep(folder, task, label)
    return out


def summarise_sweep(folder, task, label):
    from lstm_np import study
    from lstm_np.sweep import ResultsStore
    with open(os.path.join(folder, "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    ids = [f"peephole={r['peephole']}__seed={r['seed']}" for r in rows]
    histories = [ResultsStore.history_of(folder, i) for i in ids]
    out = []
    for s in study.summarize(rows, ["peephole"], histories, 0.99):
        out.append({"task": task, "recipe": label, "peephole": s["values"]["peephole"], "runs": s["ok"],
                    "reached": s["reached"], "steps_to": s["steps_to"], "seconds_to": s["seconds_to"],
                    "last_valid": s["valid_at_end"]})
    return out


def steps_table(rows, max_steps):
    from lstm_np.study import format_interval
    lines = [f"| task | peephole | training recipe | seeds at 99% within {max_steps} steps | steps to 99% (mean ± 95% CI) "
             f"| validation exact match at the end, % |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['task']} | | {r['recipe']} | failed: {r['failed']} | | |")
            continue
        recipe = "-" if r["peephole"] == "none" else ("zero init, lr × 0.1" if r["recipe"] == "recipe" else "none")
        lines.append(f"| {r['task']} | {r['peephole']} | {recipe} | {r['reached']}/{r['runs']} | "
                     f"{format_interval(tuple(r['steps_to']), digits=0)} | "
                     f"{format_interval(tuple(r['last_valid']), scale=100)} |")
    return "\n".join(lines)


def yardstick():
    return ", ".join(f"{k} {v}" for k, v in common.YARDSTICK.items())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated task names (default: all; see --list)")
    p.add_argument("--list", action="store_true", help="list the tasks and their data flags, then exit")
    p.add_argument("--budgets", default="30,60,120", help="comma-separated seconds [30,60,120]")
    p.add_argument("--no-budgets", action="store_true", help="skip part 1")
    p.add_argument("--no-torch", action="store_true", help="part 1 without the PyTorch model")
    p.add_argument("--seed", type=int, default=0, help="seed of part 1's runs [0]")
    p.add_argument("--steps-table", action="store_true", help="also run part 2 (steps to 99%% per variant)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant in part 2 [3]")
    p.add_argument("--max-steps", type=int, default=1500, help="steps after which part 2 gives up on a run [1500]")
    p.add_argument("--eval-every", type=int, default=50, help="validation cadence of part 2, in steps [50]")
    p.add_argument("--valid-size", type=int, default=1000, help="validation pairs in part 2 [1000]")
    p.add_argument("--workers", type=int, default=None, help="part 2's sweep workers [all cores]")
    p.add_argument("--sweeps-dir", help="keep part 2's sweep folders here (<task>-recipe, <task>-no-recipe) "
                                        "[a temporary folder]; the same command again reuses finished runs")
    common.add_json_flag(p, "bench_time_to_accuracy")
    args = p.parse_args()
    if args.list:
        for name, flags in TASKS.items():
            print(f"{name:15} lstm-np train {shown(flags)}")
        return 0
    names = args.only.split(",") if args.only else list(TASKS)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        p.error(f"unknown tasks {unknown}; see --list")
    with_torch = not args.no_torch and common.load_torch() is not None
    if not args.no_torch and not with_torch:
        print("torch is not installed: part 1 without the PyTorch model", file=sys.stderr)
    if with_torch:
        common.torch.set_num_threads(1)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.2f}' for x in common.load_average())}; lstm_np with its default 1 BLAS thread"
          + (f", beside PyTorch {common.torch.__version__} with 1 thread ({yardstick()})" if with_torch else ""),
          flush=True)
    result = {"budgets": [], "steps": []}
    with tempfile.TemporaryDirectory() as workdir:
        if not args.no_budgets:
            for task in names:
                for seconds in [float(s) for s in args.budgets.split(",")]:
                    row = run_row(task, seconds, args.seed, workdir, with_torch)
                    result["budgets"].append(row)
                    print(budgets_table([row], with_torch).splitlines()[-1], flush=True)
            print("\n" + budgets_table(result["budgets"], with_torch) + "\n", flush=True)
        if args.steps_table:
            sweeps_dir = os.path.abspath(args.sweeps_dir) if args.sweeps_dir else workdir
            os.makedirs(sweeps_dir, exist_ok=True)
            for task in names:
                result["steps"] += steps_rows(task, args, sweeps_dir)
                print(steps_table([r for r in result["steps"] if r["task"] == task], args.max_steps), flush=True)
            print("\n" + steps_table(result["steps"], args.max_steps))
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
