"""The `lstm-np` flags: their value types and one-line usage errors, the train options (shared by `train` and
`sweep`), the parser of every command, and the TrainConfig a `train` command line asks for (cli.py runs the
commands)."""
import argparse
import math
import os

from . import sweep
from . import tasks as task_lib
from .attention import ATTENTIONS
from .cell import PEEPHOLE_INITS, PEEPHOLES
from .config import DEFAULT_MAX_SECONDS, TrainConfig, data_name, new_run_config, with_a_limit
from .run_folder import holds_run, saved_train_options
from .seq2seq import OUTPUT_BIAS_INITS
from .serve import DEFAULT_MAX_SOURCE_LEN

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
    add(g, "--dropout", type=below_one, help=f"dropout between stacked layers [{d.dropout}]")
    add(g, "--embed-dropout", type=below_one, help=f"dropout on the source and target embeddings [{d.embed_dropout}]")
    add(g, "--output-dropout", type=below_one, help=f"dropout on the output layer's input [{d.output_dropout}]")
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
    add(g, "--final-lr-fraction", type=number_type(float, "a number in [0, 1]", lambda v: 0 <= v <= 1),
                   help=f"the decay ends at lr x this [{d.final_lr_fraction:g}]")
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
