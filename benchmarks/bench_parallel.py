"""Data parallelism (`lstm-np train --workers N`): training pairs per second of N worker processes against one
process with 1 and with N BLAS threads, on the G2P data and on a toy task; and the learning curves of one
process and of N workers from the same seed.

Throughput: for each task, the three settings run one after the other, ROUNDS times in turn (so that a
change in the machine's load hits them alike), each for SECONDS of `lstm-np train --max-seconds` with no
validation inside the budget, at the global batch of --batch-size (64 by default); pairs/s = steps × batch
size / the run's training seconds. The table gives the median over the rounds and the ratio to one process on
one thread. The machine must be otherwise idle: a worker that shares its core with another job holds every
other worker up at each step's exchange of gradients and weights.

    python benchmarks/bench_parallel.py                       # both tasks, all cores, about 20 minutes
    python benchmarks/bench_parallel.py --batch-size 256 --no-curves
    python benchmarks/bench_parallel.py --seconds 30 --rounds 1
    python benchmarks/bench_parallel.py --workers 4           # on a machine with 4 cores

Same seed: `--steps CURVE_STEPS` of the toy task in float64, one process and N workers, validated every
CURVE_EVERY steps: the validation points must agree (N workers compute the same gradients up to the order of
the sums) and the final losses to 1e-6 relative.

Prints Markdown tables and writes JSON (default benchmarks/results/bench_parallel.json).
"""
import argparse
import os
import statistics
import tempfile

import common  # benchmarks/common.py, next to this script
from common import DATA, shown

G2P = ["--train", f"{DATA}/cmudict-g2p-train.tsv", "--src-tokens", "char", "--tgt-tokens", "word",
       "--bidirectional", "--attention", "luong", "--peephole", "none", "--hidden-size", "128", "--embed-size", "64",
       "--batch-size", "64", "--lr", "1e-2", "--valid-size", "200"]
DATES = ["--task", "dates", "--hidden-size", "256", "--batch-size", "64"]
TASKS = {"G2P, hidden 128": G2P, "dates, hidden 256": DATES}
NO_VALIDATION = ["--eval-every", "1000000000", "--log-every", "1000000"]
CURVE_STEPS, CURVE_EVERY = 300, 50


def settings(workers):
    return {"1 process, 1 thread": ["--threads", "1"],
            f"1 process, {workers} threads": ["--threads", str(workers)],
            f"{workers} workers, 1 thread each": ["--threads", "1", "--workers", str(workers)]}


def pairs_per_second(m, batch_size):
    return m["steps"] * batch_size / m["train_seconds"]


def with_batch(flags, batch):
    """flags with --batch-size `batch` (None: as they are)."""
    if batch is None:
        return flags
    at = flags.index("--batch-size") + 1
    return [*flags[:at], str(batch), *flags[at + 1:]]


def throughput(workers, seconds, rounds, workdir, batch=None):
    rows = {}
    for task, flags in TASKS.items():
        flags = with_batch(flags, batch)
        size = int(flags[flags.index("--batch-size") + 1])
        runs = {name: [] for name in settings(workers)}
        for r in range(rounds):
            for name, extra in settings(workers).items():
                m = common.train_lstm_np([*flags, *extra, *NO_VALIDATION, "--max-seconds", str(seconds)], workdir,
                                         f"tp-{len(rows)}-{r}-{extra[-1]}-{len(extra)}")
                if "failed" in m:
                    raise SystemExit(f"bench_parallel: {task}, {name}: {m['failed']}")
                runs[name].append(pairs_per_second(m, size))
                print(f"{task} | {name} | round {r + 1}: {runs[name][-1]:.0f} pairs/s ({m['steps']} steps)",
                      flush=True)
        rows[task] = {name: statistics.median(v) for name, v in runs.items()} | {"runs": runs}
    return rows


def throughput_table(rows, workers):
    names = list(settings(workers))
    lines = ["| task | " + " | ".join(f"{n}: pairs/s (× 1 thread)" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for task, r in rows.items():
        base = r[names[0]]
        lines.append(f"| {task} | " + " | ".join(f"{r[n]:.0f} ({r[n] / base:.2f}×)" for n in names) + " |")
    return "\n".join(lines)


def same_seed_curves(workers, workdir):
    flags = [*DATES[:2], "--dtype", "float64", "--steps", str(CURVE_STEPS), "--eval-every", str(CURVE_EVERY),
             "--log-every", "1000000"]
    one = common.train_lstm_np(flags, workdir, "curve-1")
    many = common.train_lstm_np([*flags, "--workers", str(workers)], workdir, f"curve-{workers}")
    for m in (one, many):
        if "failed" in m:
            raise SystemExit(f"bench_parallel: same-seed run: {m['failed']}")
    lines = [f"| step | 1 process: valid exact match | loss | {workers} workers: valid exact match | loss |",
             "|---|---|---|---|---|"]
    for a, b in zip(one["history"], many["history"]):
        lines.append(f"| {a['step']} | {100 * a['exact_match']:.1f}% | {a['loss']:.6f} | "
                     f"{100 * b['exact_match']:.1f}% | {b['loss']:.6f} |")
    rel = abs(one["final_loss"] - many["final_loss"]) / abs(one["final_loss"])
    lines.append(f"\nfinal loss: {one['final_loss']:.12f} (1 process), {many['final_loss']:.12f} ({workers} workers): "
                 f"relative difference {rel:.1e}")
    return "\n".join(lines), {"one": one["history"], "many": many["history"], "final_loss_relative_difference": rel}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="workers and threads [all cores]")
    p.add_argument("--seconds", type=float, default=60, help="training seconds per throughput run [60]")
    p.add_argument("--rounds", type=int, default=2, help="runs of each setting, in turn [2]")
    p.add_argument("--batch-size", type=int, help="the global batch of every throughput run [64]")
    p.add_argument("--no-curves", action="store_true", help="throughput only, without the same-seed curves")
    common.add_json_flag(p, "bench_parallel")
    args = p.parse_args()
    print(f"{os.cpu_count()} cores; load average at start: {common.load_average()}")
    for task, flags in TASKS.items():
        print(f"{task}: lstm-np train {shown(with_batch(flags, args.batch_size))}")
    curves = None
    with tempfile.TemporaryDirectory() as workdir:
        rows = throughput(args.workers, args.seconds, args.rounds, workdir, args.batch_size)
        print(throughput_table(rows, args.workers), flush=True)
        if not args.no_curves:
            curves_text, curves = same_seed_curves(args.workers, workdir)
            print(curves_text)
    common.write_json(args.json, {"workers": args.workers, "seconds": args.seconds, "rounds": args.rounds,
                                  "batch_size": int(with_batch(G2P, args.batch_size)[G2P.index("--batch-size") + 1]),
                                  "throughput": rows, "curves": curves,
                                  "load_average_end": common.load_average()})


if __name__ == "__main__":
    main()
