"""The `lstm-np` command: train, translate, tasks, serve.

    lstm-np train --task NAME [options]            a built-in toy task
    lstm-np train --train A.tsv [--valid B.tsv] [--test C.tsv] [options]
    lstm-np translate --checkpoint DIR "source text" ...     (or one source per line on standard input)
    lstm-np tasks
    lstm-np serve --checkpoint DIR [--host 127.0.0.1] [--port 8000]    the explorer page (serve.py)

Every error is one line on stderr and a non-zero exit status: 2 for bad usage or input, 3 for a diverged
run, 130/143 after SIGINT/SIGTERM (a checkpoint is written first). A closed standard output (`| head`) ends
the command quietly with status 141, as SIGPIPE would.
"""
import argparse
import dataclasses
import json
import math
import os
import signal
import sys

from threadpoolctl import threadpool_limits

from . import tasks as task_lib
from .attention import ATTENTIONS
from .cell import PEEPHOLE_INITS, PEEPHOLES
from .checkpoint import MANIFEST, STEP_FILE, TEMP_PREFIX, CheckpointDir, CheckpointError, read_json
from .data import DataError
from .sweep import SweepError

RUN_FILES = ("checkpoint.json", "config.json", "src_vocab.json", "tgt_vocab.json")
RUN_CONTROL = {"steps", "epochs", "max_seconds", "stop_at", "metrics_out", "beam_size", "eval_every", "log_every", "out"}
DEFAULT_MAX_SECONDS = 180.0
DATA_FILES = {"train", "valid", "test"}


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise UsageError(f"{message} (see '{self.prog} --help')")


def number_type(convert, expected, ok):
    """An argparse `type`: text -> convert(text) if that succeeds and ok(value) holds, else the error
    "expected <expected>, got <text>" (argparse prefixes the flag's name)."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


positive_int = number_type(int, "a positive integer", lambda v: v >= 1)
nonneg_int = number_type(int, "an integer >= 0", lambda v: v >= 0)
positive_float = number_type(float, "a finite number > 0", lambda v: 0 < v < math.inf)   # nan fails every test
nonneg_float = number_type(float, "a finite number >= 0", lambda v: 0 <= v < math.inf)
dropout_rate = number_type(float, "a rate in [0, 1)", lambda v: 0 <= v < 1)


def add_threads_flag(group):
    group.add_argument("--threads", type=positive_int, default=1,
                       help="BLAS threads [1: these models' matrices are small, and one thread per process was "
                            "faster than two on a 2-core machine, and several times faster when other jobs share it]")


def add_train_options(t, for_sweep=False):
    """The options of `lstm-np train` (a sweep passes them to each of its runs and lacks the run-bookkeeping
    ones: --seed, --out, --resume, --overwrite, --metrics-out, --threads)."""
    from .train import TrainConfig
    d = TrainConfig()
    g = t.add_argument_group("data")
    g.add_argument("--task", choices=sorted(task_lib.TASKS), help="a built-in toy task (see 'lstm-np tasks')")
    g.add_argument("--train", metavar="FILE", help="training pairs, one 'source<TAB>target' per line")
    g.add_argument("--valid", metavar="FILE", help=f"validation pairs [{d.valid_fraction:.0%}% of --train held out]")
    g.add_argument("--test", metavar="FILE", help="test pairs for the final report [the validation pairs]")
    g.add_argument("--tokens", choices=("char", "word"), help=f"token unit of both sides [{d.tokens}]")
    g.add_argument("--src-tokens", choices=("char", "word"),
                   help="token unit of the source side, e.g. char for spelled words [--tokens]")
    g.add_argument("--tgt-tokens", choices=("char", "word"),
                   help="token unit of the target side, e.g. word for space-separated phones [--tokens]")
    g.add_argument("--lower", action="store_true", help="lower-case text before tokenizing")
    g = t.add_argument_group("model")
    g.add_argument("--embed-size", type=positive_int, help=f"embedding size [{d.embed_size}]")
    g.add_argument("--hidden-size", type=positive_int, help=f"LSTM units per layer and direction [{d.hidden_size}]")
    g.add_argument("--layers", type=positive_int, help=f"LSTM layers in encoder and decoder [{d.layers}]")
    g.add_argument("--peephole", choices=PEEPHOLES, help=f"peephole variant [{d.peephole}]")
    g.add_argument("--peephole-init", choices=PEEPHOLE_INITS,
                   help=f"initial peephole weights: zero, or uniform like the others [{d.peephole_init}]")
    g.add_argument("--bidirectional", action="store_true", help="bidirectional encoder")
    g.add_argument("--dropout", type=dropout_rate, help=f"dropout between stacked layers [{d.dropout}]")
    g.add_argument("--attention", choices=("none",) + ATTENTIONS, help=f"attention over the source [{d.attention}]")
    g.add_argument("--peeky", action=argparse.BooleanOptionalAction,
                   help="feed the encoder's summary to every decoder step [on]")
    g.add_argument("--reverse-source", action=argparse.BooleanOptionalAction,
                   help="the encoder reads the source reversed [on unless --bidirectional]")
    g.add_argument("--dtype", choices=("float32", "float64"), help=f"precision [{d.dtype}]")
    g = t.add_argument_group("optimisation")
    g.add_argument("--lr", type=positive_float, help=f"Adam peak learning rate [{d.lr:g}, chosen on character-level "
                   "data; with attention on word-level data of thousands of words, 3e-3 did far better: see the "
                   "README's Tatoeba table]")
    g.add_argument("--batch-size", type=positive_int, help=f"pairs per step [{d.batch_size}]")
    g.add_argument("--clip", type=positive_float, help=f"gradient-norm clipping threshold [{d.clip:g}]")
    g.add_argument("--weight-decay", type=nonneg_float, help=f"L2 weight decay [{d.weight_decay:g}]")
    g.add_argument("--warmup-steps", type=nonneg_int, help=f"learning-rate warm-up steps [{d.warmup_steps}]")
    g.add_argument("--peephole-lr-scale", type=nonneg_float,
                   help=f"the peephole weights learn at lr x this (0 freezes them) [{d.peephole_lr_scale:g}]")
    g.add_argument("--decay-steps", type=positive_int,
                   help="cosine decay horizon [fitted to --max-seconds; constant lr without it]")
    g = t.add_argument_group("duration and output")
    g.add_argument("--steps", type=positive_int, help="stop after N optimizer steps in all")
    g.add_argument("--epochs", type=positive_int, help="stop after N passes over the training data")
    g.add_argument("--stop-at", type=number_type(float, "a fraction in (0, 1]", lambda v: 0 < v <= 1),
                   help="also stop once a validation point reaches this exact match (e.g. 0.99)")
    g.add_argument("--max-seconds", type=positive_float,
                   help=f"stop after S seconds of training, counting the steps, validation and checkpoints but "
                        f"not loading the data or the final test evaluation [{DEFAULT_MAX_SECONDS:g} if neither "
                        f"--steps nor --epochs]")
    if not for_sweep:
        g.add_argument("--seed", type=nonneg_int, help=f"seed of weights, data order and dropout [{d.seed}]")
    g.add_argument("--eval-every", type=positive_int,
                   help="validate and checkpoint every N steps [each tenth of --max-seconds; else every 250]")
    g.add_argument("--valid-size", type=positive_int,
                   help=f"held-out pairs validated during training [{d.valid_size}]")
    g.add_argument("--log-every", type=positive_int, help=f"one log line every N steps [{d.log_every}]")
    g.add_argument("--beam-size", type=positive_int, help=f"beam width of the final test evaluation [{d.beam_size}]")
    if for_sweep:
        return
    g.add_argument("--out", metavar="DIR", help="checkpoint directory [runs/<task or training file name>]")
    g.add_argument("--resume", action="store_true", default=False, help="continue the run saved in --out")
    g.add_argument("--overwrite", action="store_true", default=False, help="replace a run already saved in --out")
    g.add_argument("--metrics-out", metavar="FILE", help="write the final metrics as JSON")
    add_threads_flag(g)


def build_parser():
    p = Parser(prog="lstm-np", description="Train and run pure-NumPy LSTM sequence-to-sequence models.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    t = sub.add_parser("train", help="train a model on a built-in task or TSV files",
                       description="Train an encoder/decoder model. Each option's default is in brackets.",
                       argument_default=argparse.SUPPRESS)
    add_train_options(t)

    tr = sub.add_parser("translate", help="translate with a trained checkpoint")
    tr.add_argument("--checkpoint", metavar="DIR", required=True, help="a directory written by 'lstm-np train'")
    tr.add_argument("--beam-size", type=positive_int, default=1, help="beam width [1: greedy]")
    tr.add_argument("--max-len", type=positive_int, default=None,
                    help="longest output [the training data's limit, or 2 x the source length + 10 if longer]")
    tr.add_argument("--plot-attention", metavar="PNG", help="save a heatmap of the attention weights (matplotlib)")
    tr.add_argument("--with-source", action="store_true",
                    help="print 'source<TAB>translation' lines (the TSV format of --train) instead of translations")
    add_threads_flag(tr)
    tr.add_argument("text", nargs="*", help="source texts [one per line on standard input]")

    sub.add_parser("tasks", help="list the built-in tasks with an example each")

    s = sub.add_parser("sweep", help="train a grid of runs in parallel and summarise them",
                       description="Train every combination of the --grid values for --seeds seeds, in parallel, "
                                   "and summarise the scores with 95% confidence intervals. The train options "
                                   "go to every run. Each option's default is in brackets.",
                       argument_default=argparse.SUPPRESS)
    g = s.add_argument_group("sweep")
    g.add_argument("--grid", metavar="KEY=V1,V2", action="append", default=[],
                   help="a train option and the values to try (repeatable; the runs are the cross product), "
                        "e.g. peephole=full,diagonal,none or hidden-size=64,128")
    g.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..N-1 for every grid point [3]")
    g.add_argument("--workers", type=positive_int, default=None,
                   help="local worker processes, one BLAS thread each [all cores]")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help='run on the Dask cluster at ADDRESS (tcp://host:port) instead: pip install "lstm_np[dask]"')
    g.add_argument("--out", metavar="DIR", help="results folder [runs/sweep-<task or training file name>]")
    g.add_argument("--retry-errors", action="store_true", default=False,
                   help="run again the runs whose row says error (finished runs are never redone)")
    g.add_argument("--summary", metavar="DIR", help="only print the summary of the sweep in DIR")
    g.add_argument("--threshold", type=number_type(float, "a fraction in (0, 1]", lambda v: 0 < v <= 1),
                   default=0.99, help="validation exact match the summary times the runs to [0.99]")
    g.add_argument("--plot", metavar="PNG", help="save learning curves and final scores (matplotlib)")
    add_train_options(s, for_sweep=True)

    from .serve import DEFAULT_MAX_SOURCE_LEN
    sv = sub.add_parser("serve", help="explore a trained model in the browser: translation, attention, gates",
                        description="Serve the explorer page and its JSON API (GET /api/model, "
                                    "/api/translate?src=...) for a trained checkpoint, until Ctrl-C.")
    sv.add_argument("--checkpoint", metavar="DIR", required=True, help="a directory written by 'lstm-np train'")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to listen on [127.0.0.1: this machine only; 0.0.0.0 opens it to the network]")
    sv.add_argument("--port", type=number_type(int, "a port in [0, 65535]", lambda v: 0 <= v <= 65535),
                    default=8000, help="TCP port [8000; 0 picks a free one, printed at start]")
    sv.add_argument("--max-source-len", type=positive_int, default=DEFAULT_MAX_SOURCE_LEN,
                    help=f"longest source accepted, in tokens [{DEFAULT_MAX_SOURCE_LEN}]")
    add_threads_flag(sv)
    return p


def train_config(args):
    """TrainConfig from the given flags; with --resume, the saved config with only run-control flags changed."""
    from .train import TrainConfig
    given = {k: v for k, v in vars(args).items() if k not in ("command", "resume", "overwrite", "threads")}
    for k in DATA_FILES & given.keys():
        # saved absolute in config.json, so that `--resume` works from any directory
        given[k] = os.path.abspath(given[k])
    if args.resume:
        if "out" not in given:
            raise UsageError("--resume needs --out DIR, the directory of the run to continue")
        if not os.path.exists(os.path.join(given["out"], MANIFEST)):
            raise UsageError(f"nothing to resume: {given['out']} holds no checkpoint")
        saved = read_json(os.path.join(given["out"], "config.json"))
        saved = saved.get("train") if isinstance(saved, dict) else None
        if not isinstance(saved, dict):
            raise CheckpointError(f"{given['out']}/config.json: no training configuration")
        cfg = TrainConfig.saved(saved)
        for k in DATA_FILES:
            if getattr(cfg, k) is not None:   # a run saved with a relative path resolves from here, as before
                setattr(cfg, k, os.path.abspath(getattr(cfg, k)))
        for k, v in given.items():
            if k not in RUN_CONTROL and v != getattr(cfg, k):
                raise UsageError(f"--{k.replace('_', '-')} cannot change when resuming (the run has "
                                 f"{getattr(cfg, k)!r}); start a new run in another --out instead")
        # a run resumed with new limits: each limit given now replaces the saved one
        for k in ("steps", "epochs", "max_seconds", "stop_at"):
            setattr(cfg, k, given.get(k))
        for k in RUN_CONTROL - {"steps", "epochs", "max_seconds", "stop_at"}:
            if k in given:
                setattr(cfg, k, given[k])
    else:
        cfg = new_run_config(given)
        if cfg.out is None:
            cfg.out = os.path.join("runs", data_name(cfg))
    if cfg.steps is None and cfg.epochs is None and cfg.max_seconds is None:
        cfg.max_seconds = DEFAULT_MAX_SECONDS
    return cfg


def new_run_config(given):
    """TrainConfig of a new run from the given options (data paths already absolute); UsageError if they do
    not describe one."""
    from .train import TrainConfig
    if ("task" in given) == ("train" in given):
        raise UsageError("give exactly one of --task NAME or --train FILE")
    if "train" not in given and ("valid" in given or "test" in given):
        raise UsageError("--valid and --test go with --train FILE (built-in tasks have their own splits)")
    cfg = TrainConfig(**given)
    if cfg.task is not None and cfg.side_tokens() != ("char", "char"):
        flag = next(f"--{k.replace('_', '-')} {given[k]}" for k in ("tokens", "src_tokens", "tgt_tokens")
                    if given.get(k, "char") != "char")
        raise UsageError(f"built-in tasks are character-level; {flag} does not apply")
    return cfg


def data_name(cfg):
    """What a run's default folder is named after: the task, or the training file's name."""
    return cfg.task or os.path.splitext(os.path.basename(cfg.train))[0]


def cmd_train(args):
    from .train import Trainer
    cfg = train_config(args)
    if os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
        raise UsageError(f"--out {cfg.out} is a file; the checkpoint needs a directory")
    exists = os.path.exists(os.path.join(cfg.out, MANIFEST))
    if not args.resume and exists:
        if not args.overwrite:
            raise UsageError(f"{cfg.out} already holds a run: add --resume to continue it, --overwrite to "
                             f"replace it, or choose another --out")
        remove_run(cfg.out)
    trainer = Trainer(cfg, resume=args.resume, log=lambda line: print(line, flush=True))
    result = trainer.run()
    if result is None:
        name = signal.Signals(trainer.stop_signal).name
        print(f"{name}: stopped at step {trainer.state['step']}; checkpoint saved in {cfg.out} "
              f"(continue with: lstm-np train --out {cfg.out} --resume)", file=sys.stderr)
        return 128 + trainer.stop_signal
    return 0


def remove_run(folder):
    """Delete the files of a saved run (only those lstm_np writes), for --overwrite."""
    for name in os.listdir(folder):
        if name in RUN_FILES or STEP_FILE.fullmatch(name) or name.startswith(TEMP_PREFIX):
            os.remove(os.path.join(folder, name))


def cmd_translate(args):
    from .evaluate import encode_source, translate_all
    from .train import load_model
    model, src_vocab, tgt_vocab, _ = load_model(args.checkpoint, which="best")
    if args.plot_attention and model.attention is None:
        raise UsageError("--plot-attention needs a model trained with --attention (this one has none)")
    texts = args.text if args.text else [line.rstrip("\r\n") for line in sys.stdin]
    if not texts:
        return 0
    state = CheckpointDir(args.checkpoint).manifest().get("state")
    trained_max_len = state.get("max_len") if isinstance(state, dict) else None
    max_len = args.max_len or max(trained_max_len if isinstance(trained_max_len, int) else 0,
                                  2 * max(len(src_vocab.encode(t)) for t in texts) + 10)
    from .data import pad_batch
    for n, text in enumerate(texts, start=1):
        warn_unknown(n, text, src_vocab)
    sources = [encode_source(src_vocab, t) for t in texts]
    if args.plot_attention:
        outputs, attn = model.translate(pad_batch(sources), max_len=max_len, beam_size=args.beam_size,
                                        return_attention=True)
    else:   # in batches of similar length, in input order
        outputs, attn = translate_all(model, sources, max_len, args.beam_size), None
    for text, ids in zip(texts, outputs):
        print(f"{text}\t{tgt_vocab.decode(ids)}" if args.with_source else tgt_vocab.decode(ids))
    if attn is not None:
        from .plot import plot_attention
        plot_attention(args.plot_attention, texts, outputs, attn, src_vocab, tgt_vocab)
        print(f"attention heatmap saved to {args.plot_attention}", file=sys.stderr)
    return 0


def warn_unknown(n, text, vocab, shown=20):
    """One stderr line when source `n` holds tokens the model never saw in training, which it reads as <unk>
    (an output for such a source means little: say why, and which ones)."""
    unknown = vocab.unknown(text)
    if not unknown:
        return
    unit = "characters" if vocab.tokens == "char" else "words"
    listed = ", ".join(repr(t) for t in unknown[:shown]) + (", ..." if len(unknown) > shown else "")
    short = text if len(text) <= 40 else text[:37] + "..."
    print(f"lstm-np: warning: source {n} {short!r}: {unit} not in the model's vocabulary, read as <unk>: {listed}",
          file=sys.stderr)


def cmd_tasks(args):
    for name, task in task_lib.TASKS.items():
        src, tgt = task_lib.example(name)
        n_train, n_valid, n_test = task.sizes
        print(f"{name:13} {task.description}\n{'':13} e.g. {src!r} -> {tgt!r}; "
              f"{n_train} training, {n_valid} validation, {n_test} test pairs")
    return 0


SWEEP_FLAGS = {"grid", "seeds", "workers", "scheduler", "out", "retry_errors", "summary", "threshold", "plot"}


def cmd_sweep(args):
    from . import sweep as sw
    if "summary" in args:
        return print_sweep_summary(args.summary, args.threshold, getattr(args, "plot", None))
    from .train import TrainConfig
    given = {k: v for k, v in vars(args).items() if k not in SWEEP_FLAGS | {"command"}}
    for k in DATA_FILES & given.keys():
        given[k] = os.path.abspath(given[k])
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    grid = sw.parse_grid(args.grid, known)
    both = sorted(grid.keys() & given.keys())
    if both:
        raise UsageError(f"--{both[0].replace('_', '-')} is given both as a train option and as a --grid key")
    if not {"task", "train"} & (given.keys() | grid.keys()):
        raise UsageError("give --task NAME or --train FILE (or a --grid over them)")
    runs = sw.plan(given, grid, args.seeds, grid_value_parser())
    for run in runs:
        if run.error is None:
            try:
                cfg = new_run_config({**run.options, **{k: os.path.abspath(v) for k, v in run.options.items()
                                                         if k in DATA_FILES}})
            except UsageError as e:
                run.options, run.error = None, str(e)
                continue
            if cfg.steps is None and cfg.epochs is None and cfg.max_seconds is None:
                cfg.max_seconds = DEFAULT_MAX_SECONDS
            run.options = dataclasses.asdict(cfg)
    name = given.get("task") or (data_name(TrainConfig(train=given["train"])) if "train" in given else "grid")
    out = getattr(args, "out", None) or os.path.join("runs", f"sweep-{name}")
    # what a rerun must repeat, data paths relative to the results folder: a moved or cloned repository keeps it
    identity = {k: os.path.relpath(v, os.path.abspath(out)) if k in DATA_FILES else v for k, v in given.items()}
    store = sw.ResultsStore(out, list(grid), json.loads(json.dumps(identity)), [r.id for r in runs])
    todo = [r for r in runs if not store.has(r, args.retry_errors)]
    workers = args.workers or len(os.sched_getaffinity(0))
    where = f"the Dask cluster at {args.scheduler}" if "scheduler" in args else f"{workers} local workers"
    print(f"sweep: {len(runs)} runs, {len(runs) - len(todo)} already done; {len(todo)} to run on {where} "
          f"-> {out}", flush=True)
    done = len(runs) - len(todo)

    def report(run, outcome):
        nonlocal done
        row = store.record(run, outcome)
        done += 1
        what = (f"exact match {float(row['test_exact_match']):.4f} in {float(row['train_seconds']):.0f} s, "
                f"{row['steps']} steps" if row["status"] == "ok" else f"error: {row['error']}")
        print(f"[{done}/{len(runs)}] {run.label()}: {what}", flush=True)

    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)   # SIGTERM stops like Ctrl-C
    try:
        for run in todo:
            if run.error is not None:
                report(run, sw.failed(run.error))
        ready = [r for r in todo if r.error is None]
        outcomes = (sw.dask_outcomes(ready, args.scheduler) if "scheduler" in args
                    else sw.local_outcomes(ready, workers, store.runs_dir,
                                           notify=lambda line: print(f"lstm-np: {line}", file=sys.stderr, flush=True)))
        for run, outcome in outcomes:
            report(run, outcome)
    except KeyboardInterrupt:
        print(f"lstm-np: interrupted; {done} of {len(runs)} runs are in {store.csv_path} (the same command "
              f"continues)", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print_sweep_summary(out, args.threshold, getattr(args, "plot", None), runs)
    failed = [r for r in runs if store.rows[r.id]["status"] == "error"]
    if failed:
        print(f"lstm-np: {len(failed)} of {len(runs)} runs failed (status error in {store.csv_path}; "
              f"--retry-errors runs them again)", file=sys.stderr)
        return 1
    return 0


def grid_value_parser():
    """parse_value(key, text) for `sweep.plan`: a grid value typed and checked as `train` would, or
    ValueError. Switches (--peeky, --bidirectional, ...) take true/false (also on/off, yes/no, 1/0)."""
    parser = Parser(prog="lstm-np train", argument_default=argparse.SUPPRESS)
    add_train_options(parser, for_sweep=True)
    actions = {a.dest: a for a in parser._actions}
    truth = {"true": True, "on": True, "yes": True, "1": True, "false": False, "off": False, "no": False, "0": False}

    def parse_value(key, text):
        action = actions[key]
        if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
            if text.lower() not in truth:
                raise ValueError(f"--{key.replace('_', '-')} is a switch: give true or false, got {text!r}")
            return truth[text.lower()]
        try:
            return getattr(parser.parse_args([action.option_strings[0], text]), key)
        except UsageError as e:
            raise ValueError(str(e).split(" (see ")[0]) from None
    return parse_value


def print_sweep_summary(folder, threshold, plot=None, runs=None):
    """The summary table of the sweep in `folder` (of `runs` only, when given), also saved as summary.md."""
    from . import study
    from . import sweep as sw
    saved = read_json(os.path.join(folder, "sweep.json"))
    if not isinstance(saved, dict) or not isinstance(saved.get("grid_keys"), list):
        raise UsageError(f"{folder}/sweep.json: not a sweep lstm_np wrote")
    keys = saved["grid_keys"]
    csv_path = os.path.join(folder, "results.csv")
    rows = sw.read_results(csv_path, keys) if os.path.exists(csv_path) else {}
    if runs is not None:
        rows = {r.id: rows[r.id] for r in runs if r.id in rows}
    if not rows:
        raise UsageError(f"{folder}: no finished runs yet")
    ids = list(rows)
    histories = [sw.ResultsStore.history_of(folder, i) for i in ids]
    summary = study.summarize(list(rows.values()), keys, histories, threshold)
    table = study.format_summary(summary, keys, threshold)
    print(table)
    from .files import atomic_write
    atomic_write(os.path.join(folder, "summary.md"), lambda f: f.write((table + "\n").encode("utf-8")))
    if plot:
        from .plot import plot_sweep
        plot_sweep(plot, list(rows.values()), keys, histories)
        print(f"plot saved to {plot}", file=sys.stderr)
    return 0


def cmd_serve(args):
    from .serve import Explorer, serve
    explorer = Explorer.from_checkpoint(args.checkpoint, max_source_len=args.max_source_len)
    return serve(explorer, args.host, args.port)


def main(argv=None):
    from .train import TrainingError
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        command = {"train": cmd_train, "translate": cmd_translate, "tasks": cmd_tasks, "sweep": cmd_sweep,
                   "serve": cmd_serve}[args.command]
        with threadpool_limits(limits=getattr(args, "threads", None), user_api="blas"):
            status = command(args)
        sys.stdout.flush()   # here, where a closed pipe is caught below, rather than at interpreter exit
        return status
    except BrokenPipeError:
        # The reader of standard output has gone (`lstm-np tasks | head -3`): stop quietly, as other command-line
        # tools do. Standard output now points at /dev/null, so that Python's own final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except TrainingError as e:
        print(f"lstm-np: {e}", file=sys.stderr)
        return 3
    except OSError as e:   # "path: reason" rather than "[Errno 2] No such file or directory: 'path'"
        print(f"lstm-np: error: {f'{e.filename}: ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 2
    except (UsageError, DataError, CheckpointError, SweepError, ValueError, TypeError) as e:
        print(f"lstm-np: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lstm-np: interrupted", file=sys.stderr)
        return 130
