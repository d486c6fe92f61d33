"""Grids of training runs, in parallel on local worker processes (joblib) or on a Dask cluster.

    lstm-np sweep [train options] --grid KEY=V1,V2 [--grid ...] --seeds N [--workers N | --scheduler ADDR] --out DIR

The runs are the cross product of the grids, each for the seeds 0..N-1: one `lstm-np train` each, with the
sweep's train options plus the run's grid values and seed, on one BLAS thread. In DIR:

    sweep.json          what the sweep is: its train options and grid keys (a rerun must match them)
    results.csv         one row per finished run (RESULT_COLUMNS), rewritten atomically as each run finishes
    runs/<run>.json     each run's metrics, with its learning curve ("history")
    runs/<run>.log      each run's log
    summary.md          the summary table (study.py), written by `summary`

`run(...)` is the whole of it (the plan, the engine, the records; a callback reports each finished run), as
`lstm-np sweep` calls it.

Running the same command again runs only the runs without a row (`--retry-errors`: and those that failed).
A run that fails (a bad value, a divergence) gets a row with status "error" and a one-line message; the
others go on. Engines:

- local (default): joblib's loky processes. If a worker process dies (killed, out of memory), joblib stops
  every run then in flight; each of them is then run again alone, so that a run that kills its worker a
  second time is the one recorded as "error" and the innocent ones finish.
- Dask (`--scheduler tcp://host:port`, `pip install "lstm_np[dask]"`): the cluster's own scheduler
  reschedules a run whose worker died, and reports it failed after its allowed failures. Workers need
  lstm_np installed and the data files at the same paths; results come back to this process.
"""
import csv
import dataclasses
import io
import itertools
import json
import os
import re

from threadpoolctl import threadpool_limits

from . import study
from .checkpoint import read_json, write_json
from .config import ConfigError, TrainConfig, data_name, new_run_config
from .files import atomic_write
from .train import Trainer

RESULT_COLUMNS = ("seed", "status", "test_exact_match", "test_token_accuracy", "test_token_error_rate", "test_bleu",
                  "final_loss", "train_seconds", "steps", "error")    # after the grid keys
LATER_COLUMNS = ("test_token_error_rate",)   # added later: an older results.csv lacks them (read as "")
METRICS = ("test_exact_match", "test_token_accuracy", "test_token_error_rate", "test_bleu", "final_loss",
           "train_seconds", "steps")
NOT_SWEPT = {"out", "resume", "overwrite", "metrics_out", "seed"}   # run bookkeeping, never a grid key
DATA_FILES = ("train", "valid", "test")                              # options naming files
FORMAT = "lstm_np-sweep-1"


class SweepError(ValueError):
    """A sweep that cannot start or continue (bad grid, a folder holding another sweep); one-line message."""


class SweepInterrupted(Exception):
    """Ctrl-C (or SIGTERM made one) stopped a sweep; every finished run is recorded. The message says how many."""


@dataclasses.dataclass
class Run:
    """One training run of a sweep: its grid values (as typed), its seed, and its train flags or why not."""
    values: dict
    seed: int
    options: dict = None     # TrainConfig fields given (the sweep's options + the grid values + the seed)
    error: str = None        # the grid values do not make a valid `train` command line

    @property
    def id(self):
        """File-name-safe identity: "peephole=full__seed=3"."""
        parts = [f"{k}={v}" for k, v in self.values.items()] + [f"seed={self.seed}"]
        return "__".join(re.sub(r"[^A-Za-z0-9._=+-]", "_", p) for p in parts)

    def label(self):
        return " ".join(f"{k}={v}" for k, v in self.values.items()) + f" seed={self.seed}"


# ----------------------------------------------------------------------------------------------------------
# the plan
def parse_grid(items, known):
    """["KEY=V1,V2", ...] -> {key: [V1, V2]} (keys as TrainConfig fields: hidden-size -> hidden_size)."""
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not values.strip():
            raise SweepError(f"--grid {item!r}: expected KEY=V1,V2,...")
        if key in NOT_SWEPT or key not in known:
            hint = "; seeds come from --seeds" if key == "seed" else ""
            raise SweepError(f"--grid {item!r}: {key!r} is not a train option that a sweep can vary{hint} "
                             f"(options: {', '.join(sorted(set(known) - NOT_SWEPT))})")
        if key in grid:
            raise SweepError(f"--grid {key} is given twice; list all its values in one --grid")
        vals = [v.strip() for v in values.split(",")]
        if "" in vals or len(set(vals)) != len(vals):
            raise SweepError(f"--grid {item!r}: values must be non-empty and distinct")
        grid[key] = vals
    return grid


def plan(options, grid, seeds, parse_value):
    """Every Run of the sweep, in grid order (the first grid varies slowest), seeds innermost.

    options: the TrainConfig fields the sweep was given; parse_value(key, text) -> typed value, raising
    ValueError with a one-line message for a value `train` would refuse."""
    runs = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        typed, error = {}, None
        for key, text in values.items():
            try:
                typed[key] = parse_value(key, text)
            except ValueError as e:
                error = f"{key}={text}: {e}"
                break
        for seed in range(seeds):
            runs.append(Run(values, seed, None if error else {**options, **typed, "seed": seed}, error))
    ids = [r.id for r in runs]
    if len(set(ids)) != len(ids):
        raise SweepError("two grid values give the same run name once made file-safe; rename one")
    return runs


# ----------------------------------------------------------------------------------------------------------
# the sweep
def run(options, grid_items, seeds, parse_value, out=None, workers=None, scheduler=None, retry_errors=False,
        report=print, notify=print):
    """Plan the sweep and run, on the Dask cluster at `scheduler` or `workers` local processes (all cores), what
    its folder `out` does not hold yet, recording each run as it finishes. -> (runs, ResultsStore).

    options: the TrainConfig fields every run is given (data paths absolute); grid_items: ["KEY=V1,V2", ...];
    parse_value as in `plan`. report(line): the plan, then one line per finished run; notify(line): a worker
    that died. SweepError for a sweep that cannot start; SweepInterrupted on KeyboardInterrupt."""
    grid = parse_grid(grid_items, {f.name for f in dataclasses.fields(TrainConfig)})
    both = sorted(grid.keys() & options.keys())
    if both:
        raise SweepError(f"--{both[0].replace('_', '-')} is given both as a train option and as a --grid key")
    if not {"task", "train"} & (options.keys() | grid.keys()):
        raise SweepError("give --task NAME or --train FILE (or a --grid over them)")
    runs = plan(options, grid, seeds, parse_value)
    for r in runs:
        if r.error is None:
            try:
                paths = {k: os.path.abspath(v) for k, v in r.options.items() if k in DATA_FILES}
                r.options = dataclasses.asdict(new_run_config({**r.options, **paths}))
            except ConfigError as e:
                r.options, r.error = None, str(e)
    name = options.get("task") or (data_name(TrainConfig(train=options["train"])) if "train" in options else "grid")
    out = out or os.path.join("runs", f"sweep-{name}")
    # what a rerun must repeat, data paths relative to the results folder: a moved or cloned repository keeps it
    identity = {k: os.path.relpath(v, os.path.abspath(out)) if k in DATA_FILES else v for k, v in options.items()}
    store = ResultsStore(out, list(grid), json.loads(json.dumps(identity)), [r.id for r in runs])
    todo = [r for r in runs if not store.has(r, retry_errors)]
    workers = workers or len(os.sched_getaffinity(0))
    where = f"the Dask cluster at {scheduler}" if scheduler else f"{workers} local workers"
    report(f"sweep: {len(runs)} runs, {len(runs) - len(todo)} already done; {len(todo)} to run on {where} -> {out}")
    done = len(runs) - len(todo)

    def record(run, outcome):
        nonlocal done
        row = store.record(run, outcome)
        done += 1
        what = (f"exact match {float(row['test_exact_match']):.4f} in {float(row['train_seconds']):.0f} s, "
                f"{row['steps']} steps" if row["status"] == "ok" else f"error: {row['error']}")
        report(f"[{done}/{len(runs)}] {run.label()}: {what}")

    try:
        for r in todo:
            if r.error is not None:
                record(r, failed(r.error))
        ready = [r for r in todo if r.error is None]
        outcomes = (dask_outcomes(ready, scheduler) if scheduler
                    else local_outcomes(ready, workers, store.runs_dir, notify=notify))
        for r, outcome in outcomes:
            record(r, outcome)
    except KeyboardInterrupt:
        raise SweepInterrupted(f"interrupted; {done} of {len(runs)} runs are in {store.csv_path} (the same command "
                               f"continues)") from None
    return runs, store


def summary(folder, threshold, plot=None, run_ids=None):
    """The Markdown summary table of the sweep in `folder` (of the runs `run_ids` only, when given), also saved
    as summary.md; with `plot`, its figure (plot.plot_sweep) saved there."""
    saved = read_json(os.path.join(folder, "sweep.json"))
    if not isinstance(saved, dict) or not isinstance(saved.get("grid_keys"), list):
        raise SweepError(f"{folder}/sweep.json: not a sweep lstm_np wrote")
    keys = saved["grid_keys"]
    csv_path = os.path.join(folder, "results.csv")
    rows = read_results(csv_path, keys) if os.path.exists(csv_path) else {}
    if run_ids is not None:
        rows = {i: rows[i] for i in run_ids if i in rows}
    if not rows:
        raise SweepError(f"{folder}: no finished runs yet")
    histories = [ResultsStore.history_of(folder, i) for i in rows]
    table = study.format_summary(study.summarize(list(rows.values()), keys, histories, threshold), keys, threshold)
    atomic_write(os.path.join(folder, "summary.md"), lambda f: f.write((table + "\n").encode("utf-8")))
    if plot:
        from .plot import plot_sweep   # matplotlib: an optional extra
        plot_sweep(plot, list(rows.values()), keys, histories)
    return table


# ----------------------------------------------------------------------------------------------------------
# one run (in a worker process)
def run_training(options, marker=None):
    """Train one run; never raises for the run's own failure. -> {"row": metrics or error, "metrics": the
    metrics JSON or None, "log": text}. `marker`: a file holding this process's id while the run is on."""
    lines = []
    if marker is not None:
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            trainer = Trainer(TrainConfig(**options), log=lines.append, handle_signals=False)
            metrics = trainer.run()
        row = {"status": "ok", **{k: metrics[k] for k in METRICS}, "error": ""}
    except Exception as e:   # the run failed: its row says why, the sweep goes on
        metrics, row = None, {"status": "error", "error": one_line(f"{type(e).__name__}: {e}")}
        lines.append(f"error: {row['error']}")
    return {"row": row, "metrics": metrics, "log": "\n".join(lines) + "\n"}


def one_line(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ----------------------------------------------------------------------------------------------------------
# engines: (run, outcome) pairs as runs finish
def local_outcomes(runs, workers, marker_dir, notify=print):
    """Runs on local worker processes (joblib's loky executor: every run in a worker process, never in this
    one). See the module docstring for what happens when a worker dies; `notify` gets a line when it does."""
    from joblib.externals.loky import ProcessPoolExecutor, as_completed
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    markers = {r.id: os.path.join(marker_dir, r.id + ".running") for r in runs}

    def clear(batch):
        for r in batch:
            if os.path.exists(markers[r.id]):
                os.remove(markers[r.id])

    def execute(batch, n_workers):
        """(run, outcome) as each finishes; TerminatedWorkerError when a worker dies."""
        clear(batch)
        pool = ProcessPoolExecutor(max_workers=n_workers)
        try:
            futures = {pool.submit(run_training, r.options, markers[r.id]): r for r in batch}
            for future in as_completed(futures):
                run = futures[future]
                outcome = future.result()
                clear([run])
                yield run, outcome
        finally:
            pool.shutdown(wait=False, kill_workers=True)   # at once, on Ctrl-C too: no run is left behind

    pending = list(runs)
    while pending:
        try:
            for run, outcome in execute(pending, min(workers, len(pending))):
                pending.remove(run)
                yield run, outcome
        except TerminatedWorkerError as e:
            suspects = [r for r in pending if os.path.exists(markers[r.id])]
            notify(f"a worker process died ({one_line(e, 100)}); the {len(suspects)} run(s) then in flight run "
                   f"again, one at a time: {', '.join(r.label() for r in suspects)}")
            for run in suspects:       # each alone: a run that kills its worker again is the one to blame
                try:
                    (_, outcome), = execute([run], 1)
                except TerminatedWorkerError:
                    outcome = failed("the worker process died while running it, twice")
                clear([run])
                pending.remove(run)
                yield run, outcome


def dask_outcomes(runs, address):
    """Runs on the Dask cluster at `address`."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise SweepError('--scheduler needs Dask: pip install "lstm_np[dask]"') from None
    try:
        client = Client(address, timeout="5s")
    except (OSError, TimeoutError) as e:
        raise SweepError(f"cannot reach the Dask scheduler at {address}: {one_line(e, 200)}") from None
    with client:
        futures = {client.submit(run_training, r.options, key=f"lstm-np-{r.id}-{os.getpid()}", pure=False): r
                   for r in runs}
        for future in as_completed(futures):
            run = futures[future]
            try:
                outcome = future.result()
            except Exception as e:   # KilledWorker (the run killed its workers), or the cluster's own failure
                outcome = failed(f"the cluster gave up on it: {type(e).__name__}: {one_line(e, 200)}")
            yield run, outcome


def failed(message):
    return {"row": {"status": "error", "error": one_line(message)}, "metrics": None, "log": f"error: {message}\n"}


# ----------------------------------------------------------------------------------------------------------
# the results folder
class ResultsStore:
    """DIR/sweep.json, DIR/results.csv and DIR/runs/: see the module docstring."""

    def __init__(self, folder, keys, options, order=()):
        """order: run ids in the order results.csv lists them (the plan's); other rows follow."""
        self.folder, self.keys, self.order = folder, list(keys), {run_id: k for k, run_id in enumerate(order)}
        self.runs_dir = os.path.join(folder, "runs")
        self.csv_path = os.path.join(folder, "results.csv")
        identity = {"format": FORMAT, "grid_keys": self.keys, "train_options": options}
        manifest = os.path.join(folder, "sweep.json")
        if os.path.exists(manifest):
            saved = read_json(manifest)
            for what in ("format", "grid_keys", "train_options"):
                if not isinstance(saved, dict) or saved.get(what) != identity[what]:
                    raise SweepError(f"{folder} holds a sweep with other {what.replace('_', ' ')} "
                                     f"({describe_change(saved.get(what) if isinstance(saved, dict) else None, identity[what])}); "
                                     f"rerun it as it was, or choose another --out")
        elif os.path.exists(self.csv_path):
            raise SweepError(f"{folder} has a results.csv but no sweep.json: not a folder lstm_np wrote")
        os.makedirs(self.runs_dir, exist_ok=True)
        if not os.path.exists(manifest):
            write_json(manifest, identity)
        self.rows = read_results(self.csv_path, self.keys) if os.path.exists(self.csv_path) else {}

    def has(self, run, retry_errors=False):
        row = self.rows.get(run.id)
        return row is not None and not (retry_errors and row["status"] == "error")

    def record(self, run, outcome):
        """Keep the run's metrics and log, then its row (the row last: a row means the run is complete)."""
        base = os.path.join(self.runs_dir, run.id)
        if outcome["metrics"] is not None:
            write_json(base + ".json", outcome["metrics"])
        atomic_write(base + ".log", lambda f: f.write(outcome["log"].encode("utf-8")))
        row = {**run.values, "seed": run.seed, **{k: "" for k in RESULT_COLUMNS[1:]}, **outcome["row"]}
        self.rows[run.id] = {k: fmt(row[k]) for k in self.keys + list(RESULT_COLUMNS)}
        self.rows = dict(sorted(self.rows.items(), key=lambda item: self.order.get(item[0], len(self.order))))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.keys + list(RESULT_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows.values())
        atomic_write(self.csv_path, lambda f: f.write(text.getvalue().encode("utf-8")))
        return self.rows[run.id]

    @staticmethod
    def history_of(folder, run_id):
        """The learning curve of run `run_id` in the sweep folder (empty for a failed run)."""
        path = os.path.join(folder, "runs", run_id + ".json")
        return read_json(path).get("history", []) if os.path.exists(path) else []


def fmt(value):
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def describe_change(saved, now):
    if isinstance(saved, dict) and isinstance(now, dict):
        changed = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
        return ", ".join(f"{k}: {saved.get(k)!r} then, {now.get(k)!r} now" for k in changed[:3])
    return f"{saved!r} then, {now!r} now"


def read_results(path, keys):
    """{run id: row} from results.csv; SweepError if it is not a results file of these grid keys. A file written
    before the LATER_COLUMNS existed reads with those cells empty."""
    columns = keys + list(RESULT_COLUMNS)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames not in (columns, [c for c in columns if c not in LATER_COLUMNS]):
            raise SweepError(f"{path}: its columns {reader.fieldnames} are not this sweep's {columns}")
        rows = list(reader)
    out = {}
    for row in rows:
        row = {c: row.get(c, "") for c in columns}
        run = Run({k: row[k] for k in keys}, int(row["seed"]))
        out[run.id] = row
    return out

