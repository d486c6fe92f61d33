"""The `lstm-np` command: train, translate, tasks, sweep, serve: flags in, the library's work (train.py,
run_folder.py, sweep.py, serve.py) called, one-line errors and exit statuses out.

    lstm-np train --task NAME [options]            a built-in toy task
    lstm-np train --train A.tsv [--valid B.tsv] [--test C.tsv] [options]
    lstm-np translate --checkpoint DIR "source text" ...     (or one source per line on standard input)
    lstm-np evaluate --checkpoint DIR [--checkpoint DIR ...] (--test FILE | --held-out) [--beam-size K]
    lstm-np tasks
    lstm-np sweep [train options] --grid KEY=V1,V2 --seeds N --out DIR    (sweep.py)
    lstm-np serve --checkpoint DIR [--host 127.0.0.1] [--port 8000]    the explorer page (serve.py)

Every error is one line on stderr and a non-zero exit status: 2 for bad usage or input, 3 for a diverged
run, 4 when a --workers process died (workers.py), 130/143 after SIGINT/SIGTERM (a checkpoint is written
first). A closed standard output (`| head`) ends the command quietly with status 141, as SIGPIPE would.
"""
import argparse
import dataclasses
import math
import os
import platform
import signal
import sys

from threadpoolctl import threadpool_limits

from . import parallel, sweep, workers
from . import tasks as task_lib
from .attention import ATTENTIONS
from .cell import PEEPHOLE_INITS, PEEPHOLES
from .checkpoint import CheckpointError, write_json
from .config import DEFAULT_MAX_SECONDS, TrainConfig, data_name, new_run_config, with_a_limit
from .data import DataError, pad_batch, read_tsv
from .ensemble import ensemble_folders, load_ensemble, shared_split
from .evaluate import as_test_metrics, encode_source, evaluate, translate_all
from .run_folder import holds_run, output_limit, remove_run, saved_train_options
from .seq2seq import OUTPUT_BIAS_INITS
from .serve import DEFAULT_MAX_SOURCE_LEN, Explorer, serve
from .train import Trainer, TrainingError, load_data, validation_pairs

RUN_CONTROL = {"steps", "epochs", "max_seconds", "stop_at", "metrics_out", "beam_size", "eval_every", "log_every", "out"}
DATA_FILES = set(sweep.DATA_FILES)


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
below_one = number_type(float, "a number in [0, 1)", lambda v: 0 <= v < 1)


def add_threads_flag(group):
    group.add_argument("--threads", type=positive_int, default=1,
                       help="BLAS threads [1: these models' matrices are small, and one thread per process was "
                            "faster than two on a 2-core machine, and several times faster when other jobs share it]")


def add_train_options(t, for_sweep=False):
    """The options of `lstm-np train` (a sweep passes them to each of its runs and lacks the run-bookkeeping
    ones: --seed, --out, --resume, --overwrite, --metrics-out, --threads); -> {dest: the argparse Action}."""
    d = TrainConfig()
    actions = {}

    def add(group, *flags, **kwargs):
        action = group.add_argument(*flags, **kwargs)
        actions[action.dest] = action
    g = t.add_argument_group("data")
    add(g, "--task", choices=sorted(task_lib.TASKS), help="a built-in toy task (see 'lstm-np tasks')")
    add(g, "--train", metavar="FILE", help="training pairs, one 'source<TAB>target' per line")
    add(g, "--valid", metavar="FILE", help=f"validation pairs [{d.valid_fraction:.0%}% of --train held out]")
    add(g, "--test", metavar="FILE", help="test pairs for the final report [the validation pairs]")
    add(g, "--tokens", choices=("char", "word"), help=f"token unit of both sides [{d.tokens}]")
    add(g, "--src-tokens", choices=("char", "word"),
                   help="token unit of the source side, e.g. char for spelled words [--tokens]")
    add(g, "--tgt-tokens", choices=("char", "word"),
                   help="token unit of the target side, e.g. word for space-separated phones [--tokens]")
    add(g, "--lower", action="store_true", help="lower-case text before tokenizing")
    g = t.add_argument_group("model")
    add(g, "--embed-size", type=positive_int, help=f"embedding size [{d.embed_size}]")
    add(g, "--hidden-size", type=positive_int, help=f"LSTM units per layer and direction [{d.hidden_size}]")
    add(g, "--layers", type=positive_int, help=f"LSTM layers in encoder and decoder [{d.layers}]")
    add(g, "--peephole", choices=PEEPHOLES, help=f"peephole variant [{d.peephole}]")
    add(g, "--peephole-init", choices=PEEPHOLE_INITS,
                   help=f"initial peephole weights: zero, or uniform like the others [{d.peephole_init}]")
    add(g, "--bidirectional", action="store_true", help="bidirectional encoder")
    add(g, "--dropout", type=dropout_rate, help=f"dropout between stacked layers [{d.dropout}]")
    add(g, "--embed-dropout", type=dropout_rate, help=f"dropout on the source and target embeddings [{d.embed_dropout}]")
    add(g, "--output-dropout", type=dropout_rate, help=f"dropout on the output layer's input [{d.output_dropout}]")
    add(g, "--attention", choices=("none",) + ATTENTIONS, help=f"attention over the source [{d.attention}]")
    add(g, "--output-bias", choices=OUTPUT_BIAS_INITS,
                   help=f"output bias starts at the targets' log-frequencies, or uniform [{d.output_bias}]")
    add(g, "--peeky", action=argparse.BooleanOptionalAction,
                   help="feed the encoder's summary to every decoder step [on]")
    add(g, "--reverse-source", action=argparse.BooleanOptionalAction,
                   help="the encoder reads the source reversed [on unless --bidirectional]")
    add(g, "--dtype", choices=("float32", "float64"), help=f"precision [{d.dtype}]")
    g = t.add_argument_group("optimisation")
    add(g, "--lr", type=positive_float, help=f"Adam peak learning rate [{d.lr:g}]")
    add(g, "--batch-size", type=positive_int, help=f"pairs per step [{d.batch_size}]")
    add(g, "--clip", type=positive_float, help=f"gradient-norm clipping threshold [{d.clip:g}]")
    add(g, "--weight-decay", type=nonneg_float, help=f"L2 weight decay [{d.weight_decay:g}]")
    add(g, "--label-smoothing", type=below_one,
                   help=f"train towards (1 - e) the true token + e spread over the vocabulary [{d.label_smoothing:g}]")
    add(g, "--warmup-steps", type=nonneg_int, help=f"learning-rate warm-up steps [{d.warmup_steps}]")
    add(g, "--peephole-lr-scale", type=nonneg_float,
                   help=f"the peephole weights learn at lr x this (0 freezes them) [{d.peephole_lr_scale:g}]")
    add(g, "--combine-lr-scale", type=nonneg_float, help=f"attention's tanh(W_c [ctx;h]) learns at lr x this [{d.combine_lr_scale:g}]")
    add(g, "--decay-steps", type=positive_int,
                   help="cosine decay horizon [fitted to --max-seconds; constant lr without it]")
    add(g, "--average-decay", type=below_one,
                   help="keep an average of the weights with this decay (e.g. 0.999); the final test uses it when "
                        f"it validates better than the last and the best weights [{d.average_decay:g}: none]")
    g = t.add_argument_group("duration and output")
    add(g, "--steps", type=positive_int, help="stop after N optimizer steps in all")
    add(g, "--epochs", type=positive_int, help="stop after N passes over the training data")
    add(g, "--stop-at", type=number_type(float, "a fraction in (0, 1]", lambda v: 0 < v <= 1),
                   help="also stop once a validation point reaches this exact match (e.g. 0.99)")
    add(g, "--max-seconds", type=positive_float,
                   help=f"stop after S seconds of training, counting the steps, validation and checkpoints but "
                        f"not loading the data or the final test evaluation [{DEFAULT_MAX_SECONDS:g} if neither "
                        f"--steps nor --epochs]")
    if not for_sweep:
        add(g, "--seed", type=nonneg_int, help=f"seed of weights, data order and dropout [{d.seed}]")
    add(g, "--split-seed", type=nonneg_int,
                   help="seed of the validation words held out of --train, alone [--seed]: models to be ensembled "
                        "(lstm-np evaluate) share one")
    add(g, "--eval-every", type=positive_int,
                   help="validate and checkpoint every N steps [each tenth of --max-seconds; else every 250]")
    add(g, "--valid-size", type=positive_int,
                   help=f"held-out pairs validated during training [{d.valid_size}]")
    add(g, "--log-every", type=positive_int, help=f"one log line every N steps [{d.log_every}]")
    add(g, "--beam-size", type=positive_int, help=f"beam width of the final test evaluation [{d.beam_size}]")
    if for_sweep:
        return actions
    add(g, "--out", metavar="DIR", help="checkpoint directory [runs/<task or training file name>]")
    add(g, "--resume", action="store_true", default=False, help="continue the run saved in --out")
    add(g, "--overwrite", action="store_true", default=False, help="replace a run already saved in --out")
    add(g, "--metrics-out", metavar="FILE", help="write the final metrics as JSON")
    add_threads_flag(g)
    return actions


RUNS_HELP = ("a directory written by 'lstm-np train', or a folder of such runs; repeated or a folder of runs: "
             "their ensemble (ensemble.py)")


def build_parser():
    p = Parser(prog="lstm-np", description="Train and run pure-NumPy LSTM sequence-to-sequence models.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    t = sub.add_parser("train", help="train a model on a built-in task or TSV files",
                       description="Train an encoder/decoder model. Each option's default is in brackets.",
                       argument_default=argparse.SUPPRESS)
    add_train_options(t)
    t.add_argument("--workers", type=positive_int, help="processes training the model together, each on a share "
                   "of every batch (MPI: parallel.py; pip install \"lstm_np[mpi]\") [1]")

    tr = sub.add_parser("translate", help="translate with a trained checkpoint (or an ensemble of them)")
    tr.add_argument("--checkpoint", metavar="DIR", required=True, action="append", help=RUNS_HELP)
    tr.add_argument("--beam-size", type=positive_int, default=1, help="beam width [1: greedy]")
    tr.add_argument("--max-len", type=positive_int, default=None,
                    help="longest output [the training data's limit, or 2 x the source length + 10 if longer]")
    tr.add_argument("--plot-attention", metavar="PNG", help="save a heatmap of the attention weights (matplotlib)")
    tr.add_argument("--with-source", action="store_true",
                    help="print 'source<TAB>translation' lines (the TSV format of --train) instead of translations")
    add_threads_flag(tr)
    tr.add_argument("text", nargs="*", help="source texts [one per line on standard input]")

    ev = sub.add_parser("evaluate", help="score a trained checkpoint (or an ensemble of them) on a TSV file",
                        description="Exact match (1 - WER for G2P), token accuracy, token error rate (PER/CER), "
                                    "BLEU and chrF of a checkpoint's best weights, or of several checkpoints' "
                                    "ensemble, as `lstm-np train` scores its final test.")
    ev.add_argument("--checkpoint", metavar="DIR", required=True, action="append", help=RUNS_HELP)
    which = ev.add_mutually_exclusive_group(required=True)
    which.add_argument("--test", metavar="FILE", help="source<TAB>target pairs to score")
    which.add_argument("--held-out", action="store_true",
                       help="the validation pairs the run(s) held out and validated on (their --valid-size first)")
    ev.add_argument("--beam-size", type=positive_int, default=1, help="beam width [1: greedy]")
    ev.add_argument("--metrics-out", metavar="FILE.json", help="also write the metrics as JSON")
    add_threads_flag(ev)

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

    sv = sub.add_parser("serve", help="explore a trained model in the browser: translation, attention, gates",
                        description="Serve the explorer page and its JSON API (GET /api/model, "
                                    "/api/translate?src=...) for a trained checkpoint, until Ctrl-C.")
    sv.add_argument("--checkpoint", metavar="DIR", required=True,
                    help="a directory written by 'lstm-np train' (or a folder holding one such run)")
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
    given = {k: v for k, v in vars(args).items()
             if k not in ("command", "resume", "overwrite", "threads", "workers", "argv")}
    for k in DATA_FILES & given.keys():
        # saved absolute in config.json, so that `--resume` works from any directory
        given[k] = os.path.abspath(given[k])
    if not args.resume:
        cfg = new_run_config(given)
        if cfg.out is None:
            cfg.out = os.path.join("runs", data_name(cfg))
        return cfg
    if "out" not in given:
        raise UsageError("--resume needs --out DIR, the directory of the run to continue")
    if not holds_run(given["out"]):
        raise UsageError(f"nothing to resume: {given['out']} holds no checkpoint")
    cfg = TrainConfig.saved(saved_train_options(given["out"]))
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
    return with_a_limit(cfg)


def cmd_train(args):
    cfg = train_config(args)
    if getattr(args, "workers", 1) > 1 and not parallel.started_by_workers():   # start them: workers.py
        return workers.run_workers(workers.check_workers(args.workers, cfg.batch_size), args.workers, args.argv,
                                   cfg.out)
    world = parallel.world()                        # alone, or the MPI ranks training this model together
    if os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
        raise UsageError(f"--out {cfg.out} is a file; the checkpoint needs a directory")
    replace = not args.resume and holds_run(cfg.out)
    if replace and not args.overwrite:
        raise UsageError(f"{cfg.out} already holds a run: add --resume to continue it, --overwrite to "
                         f"replace it, or choose another --out")
    world.barrier()                                 # every rank has looked at --out before rank 0 changes it
    if replace and world.rank == 0:
        remove_run(cfg.out)
    trainer = Trainer(cfg, resume=args.resume, log=lambda line: print(line, flush=True), world=world)
    result = trainer.run()
    world.rest_until_all_done()                     # the others leave rank 0's final test their cores
    if result is None and world.rank == 0:
        name = signal.Signals(trainer.stop_signal).name
        print(f"{name}: stopped at step {trainer.state.step}; checkpoint saved in {cfg.out} "
              f"(continue with: lstm-np train --out {cfg.out} --resume)", file=sys.stderr)
    return 0 if result is not None else 128 + trainer.stop_signal


def cmd_translate(args):
    model, src_vocab, tgt_vocab, trained_limit, folders = load_ensemble(args.checkpoint)
    if args.plot_attention and len(folders) > 1:
        raise UsageError("--plot-attention shows one model's attention: give one --checkpoint run")
    if args.plot_attention and model.attention is None:
        raise UsageError("--plot-attention needs a model trained with --attention (this one has none)")
    texts = args.text if args.text else [line.rstrip("\r\n") for line in sys.stdin]
    if not texts:
        return 0
    max_len = args.max_len or output_limit(max(len(src_vocab.encode(t)) for t in texts), trained_limit)
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


def cmd_evaluate(args):
    model, src_vocab, tgt_vocab, trained_limit, folders = load_ensemble(args.checkpoint)
    if args.held_out:
        cfg = dataclasses.replace(TrainConfig.saved(shared_split(folders)), test=None)   # the test file unread
        pairs = validation_pairs(cfg, load_data(cfg)[0])
        where = (f"the {len(pairs)} validation pairs " + (f"of {cfg.valid}" if cfg.valid else
                 f"held out of {cfg.train}" if cfg.task is None else f"of task {cfg.task}"))
    else:
        pairs = read_tsv(os.path.abspath(args.test))
        where = args.test
    if not pairs:
        raise UsageError(f"{where}: no pairs to score")
    # the output limit the runs' final tests decoded with; without one, the sources' own
    limit = trained_limit or output_limit(max(len(src_vocab.encode(s)) for s, _ in pairs))
    metrics, _ = evaluate(model, src_vocab, tgt_vocab, pairs, limit, args.beam_size, with_bleu=True)
    result, line = as_test_metrics(metrics)
    result.update({"test_set": "held-out" if args.held_out else os.path.abspath(args.test),
                   "beam_size": args.beam_size, "checkpoints": [os.path.abspath(f) for f in folders]})
    print(f"{len(folders)} model{'s' if len(folders) > 1 else ''} ({', '.join(folders)}) on {where}, beam "
          f"{args.beam_size}: {line}")
    if args.metrics_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.metrics_out)), exist_ok=True)
        write_json(args.metrics_out, result)
    return 0


def cmd_tasks(args):
    for name, task in task_lib.TASKS.items():
        src, tgt = task_lib.example(name)
        n_train, n_valid, n_test = task.sizes
        print(f"{name:13} {task.description}\n{'':13} e.g. {src!r} -> {tgt!r}; "
              f"{n_train} training, {n_valid} validation, {n_test} test pairs")
    return 0


SWEEP_FLAGS = {"grid", "seeds", "workers", "scheduler", "out", "retry_errors", "summary", "threshold", "plot"}


def cmd_sweep(args):
    plot = getattr(args, "plot", None)
    if "summary" in args:
        return print_sweep_summary(args.summary, args.threshold, plot)
    options = {k: v for k, v in vars(args).items() if k not in SWEEP_FLAGS | {"command"}}
    for k in DATA_FILES & options.keys():
        options[k] = os.path.abspath(options[k])
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)   # SIGTERM stops like Ctrl-C
    try:
        runs, store = sweep.run(options, args.grid, args.seeds, grid_value_parser(), getattr(args, "out", None),
                                args.workers, getattr(args, "scheduler", None), args.retry_errors,
                                report=lambda line: print(line, flush=True),
                                notify=lambda line: print(f"lstm-np: {line}", file=sys.stderr, flush=True))
    except sweep.SweepInterrupted as e:
        print(f"lstm-np: {e}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print_sweep_summary(store.folder, args.threshold, plot, [r.id for r in runs])
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
    actions = add_train_options(parser, for_sweep=True)
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


def print_sweep_summary(folder, threshold, plot=None, run_ids=None):
    """Print the summary table of the sweep in `folder` (sweep.summary); with `plot`, save its figure."""
    print(sweep.summary(folder, threshold, plot, run_ids))
    if plot:
        print(f"plot saved to {plot}", file=sys.stderr)
    return 0


def cmd_serve(args):
    folder = args.checkpoint
    if not holds_run(folder) and os.path.isdir(folder):
        runs = ensemble_folders([folder])                # a folder of runs (make g2p's): serve one of them
        if len(runs) > 1:
            raise UsageError(f"{folder} holds {len(runs)} runs; the explorer shows one model: --checkpoint "
                             f"{runs[0]}")
        folder = runs[0]
    explorer = Explorer.from_checkpoint(folder, max_source_len=args.max_source_len)
    return serve(explorer, args.host, args.port)


def main(argv=None):
    parser = build_parser()
    # The ranks of one model (parallel.py) meet the same usage errors: rank 0 says them, the others end quietly.
    # Each error is one write, so that the lines of several ranks do not mix (stderr writes through).
    # A file error each rank says, since its machine may lack what the others have (named when mpiexec was typed).
    rank = parallel.launched_rank()
    say = sys.stderr if rank == 0 else open(os.devnull, "w")
    where = f"rank {rank} on {platform.node()}: " if rank and not parallel.started_by_workers() else ""
    try:
        args = parser.parse_args(argv)
        if args.command == "train":       # --workers starts `lstm-np <the same argv>` on each worker
            args.argv = sys.argv[1:] if argv is None else list(argv)
        if args.command is None:
            parser.print_help()
            return 2
        command = {"train": cmd_train, "translate": cmd_translate, "evaluate": cmd_evaluate, "tasks": cmd_tasks,
                   "sweep": cmd_sweep, "serve": cmd_serve}[args.command]
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
        say.write(f"lstm-np: {e}\n")
        return 3
    except OSError as e:   # "path: reason" rather than "[Errno 2] No such file or directory: 'path'"
        sys.stderr.write(f"lstm-np: {where}error: {f'{e.filename}: ' if e.filename else ''}{e.strerror or e}\n")
        return 2
    except (DataError, CheckpointError) as e:
        sys.stderr.write(f"lstm-np: {where}error: {e}\n")
        return 2
    except (UsageError, sweep.SweepError, ValueError, TypeError) as e:
        say.write(f"lstm-np: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        say.write("lstm-np: interrupted\n")
        return 130
    finally:
        parallel.note_finished()        # a rank that got here did not die (workers.py tells the two apart)
