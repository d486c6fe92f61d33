"""Tune the PyTorch yardstick of bench_time_to_accuracy.py the way lstm_np's training defaults were tuned: on
validation exact match over pairs held out of the training files (the split `lstm-np train` holds out of
--train: 5% of the sources, at most 2000), never on the test files, on the DLfS2 addition and dates data.

Each run trains common.TorchSeq2Seq for --seconds of CPU time (1 torch thread, seed 0: the time the run got
whatever else the machine was doing, so a busy moment does not handicap one setting against another) and
scores greedy exact match on the whole held-out split. A setting's score is the mean over the two tasks.
Three stages, each varying its keys around the best setting of the stages before it:

    1. structure:  attention none/luong x peeky no/yes x reversed source no/yes   (lr 3e-3, batch 64, constant lr,
                   hidden 128 and embedding 64: lstm_np's sizes)
    2. optimizer:  lr 1e-3/3e-3/1e-2 x batch 64/128
    3. schedule and size:  constant lr or a cosine decay over the budget x hidden 128/256

    python benchmarks/tune_yardstick.py          # 32 runs, 2 at a time: about 10 minutes on an idle 2-core machine

Writes OUT/results.csv (one row per run; the same command again runs only what is missing) and OUT/summary.md
(every setting's scores by stage, then the chosen one). common.YARDSTICK holds the chosen setting.
"""
import argparse
import csv
import itertools
import multiprocessing
import os
import sys
import time

import common  # benchmarks/common.py, next to this script

TASKS = {"dlfs2-addition": ["--train", f"{common.DATA}/dlfs2-addition-train.tsv"],
         "dlfs2-date": ["--train", f"{common.DATA}/dlfs2-date-train.tsv"]}
KEYS = ["attention", "peeky", "reverse_source", "lr", "batch_size", "schedule", "hidden_size"]
START = {"attention": "none", "peeky": False, "reverse_source": False, "lr": 3e-3, "batch_size": 64,
         "schedule": "constant", "hidden_size": 128}
STAGES = [("structure", {"attention": ["none", "luong"], "peeky": [False, True], "reverse_source": [False, True]}),
          ("optimizer", {"lr": [1e-3, 3e-3, 1e-2], "batch_size": [64, 128]}),
          ("schedule and size", {"schedule": ["constant", "cosine"], "hidden_size": [128, 256]})]
FIELDS = ["task", *KEYS, "seed", "seconds", "steps", "cpu_seconds", "wall_seconds", "valid_pairs", "valid_exact_match"]


def key_of(setting, task, seconds):
    return (task, *(str(setting[k]) for k in KEYS), f"{seconds:g}")


def one_run(job):
    """Train and score one (task, setting); runs in a worker process with one torch thread."""
    task, setting, seconds = job
    common.load_torch().set_num_threads(1)
    from lstm_np.evaluate import evaluate
    data = common.torch_data(TASKS[task], seed=0)
    wall = time.perf_counter()
    kwargs = {**setting, "attention": None if setting["attention"] == "none" else setting["attention"]}
    model, steps, cpu_seconds = common.train_torch(data, seconds, seed=0, clock=time.process_time, **kwargs)
    valid = data.splits["valid"]
    metrics, _ = evaluate(model, data.src_vocab, data.tgt_vocab, valid, common.max_len_of(data))
    return {"task": task, **setting, "seed": 0, "seconds": f"{seconds:g}", "steps": steps,
            "cpu_seconds": cpu_seconds, "wall_seconds": round(time.perf_counter() - wall, 1), "valid_pairs": metrics["examples"],
            "valid_exact_match": round(metrics["exact_match"], 4)}


def read_rows(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_row(path, row):
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)


def score(rows, setting, seconds):
    """Mean validation exact match of `setting` over the tasks, or None while a task is missing."""
    got = {r["task"]: float(r["valid_exact_match"]) for r in rows
           if key_of({k: r[k] for k in KEYS}, r["task"], float(r["seconds"])) == key_of(setting, r["task"], seconds)}
    return sum(got.values()) / len(TASKS) if set(got) == set(TASKS) else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(common.ROOT, "docs", "studies", "yardstick"),
                   help="folder of results.csv and summary.md [docs/studies/yardstick]")
    p.add_argument("--seconds", type=float, default=30.0, help="training budget of each run, CPU seconds [30]")
    p.add_argument("--workers", type=int, default=2, help="runs at a time, one torch thread each [2]")
    args = p.parse_args()
    if common.load_torch() is None:
        p.error("torch is not installed (pip install torch==2.13.0, the CPU build)")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "results.csv")
    best, report = dict(START), []
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for stage, grid in STAGES:
            settings = [{**best, **dict(zip(grid, values))} for values in itertools.product(*grid.values())]
            done = {key_of({k: r[k] for k in KEYS}, r["task"], float(r["seconds"])) for r in read_rows(path)}
            jobs = [(task, s, args.seconds) for s in settings for task in TASKS
                    if key_of(s, task, args.seconds) not in done]
            for row in pool.imap_unordered(one_run, jobs):
                append_row(path, row)
                print(" ".join(f"{k}={row[k]}" for k in FIELDS), flush=True)
            rows = read_rows(path)
            scored = [(score(rows, s, args.seconds), s) for s in settings]
            best = max(scored, key=lambda x: x[0])[1]
            report.append((stage, grid, scored, rows))
    write_summary(os.path.join(args.out, "summary.md"), report, best, args.seconds)
    print(open(os.path.join(args.out, "summary.md")).read())
    return 0


def write_summary(path, report, best, seconds):
    lines = ["# The PyTorch yardstick's settings", "",
             f"Validation exact match (%) of `common.TorchSeq2Seq` after {seconds:g} s of CPU time of training (1 "
             "torch thread, seed 0), on the pairs `lstm-np train` holds out of each training file; the test files "
             "are not read. "
             "Each stage varies its keys around the best setting of the stages before it.", "",
             "    python benchmarks/tune_yardstick.py", ""]
    for stage, grid, scored, rows in report:
        keys = list(grid)
        lines += [f"## {stage}", "", "| " + " | ".join(keys) + " | " + " | ".join(TASKS) + " | mean | steps |",
                  "|" + "---|" * (len(keys) + len(TASKS) + 2)]
        for mean, s in sorted(scored, key=lambda x: -x[0]):
            runs = {r["task"]: r for r in rows if key_of({k: r[k] for k in KEYS}, r["task"], float(r["seconds"]))
                    == key_of(s, r["task"], seconds)}
            lines.append("| " + " | ".join(str(s[k]) for k in keys) + " | "
                         + " | ".join(f"{100 * float(runs[t]['valid_exact_match']):.1f}" for t in TASKS)
                         + f" | {100 * mean:.1f} | " + " / ".join(runs[t]["steps"] for t in TASKS) + " |")
        lines.append("")
    lines += ["## Chosen", "", ", ".join(f"{k} {best[k]}" for k in KEYS), ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
