"""The `lstm-np` command: train, translate, evaluate, tasks, sweep, serve: flags in (parsed by flags.py), the
library's work (train.py, run_folder.py, sweep.py, serve.py) called, one-line errors and exit statuses out.

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
import dataclasses
import os
import platform
import signal
import sys

from threadpoolctl import threadpool_limits

from . import parallel, sweep, workers
from . import tasks as task_lib
from .checkpoint import CheckpointError, write_json
from .config import TrainConfig
from .data import DataError, pad_batch, read_tsv
from .ensemble import ensemble_folders, load_ensemble, shared_split
from .evaluate import as_test_metrics, encode_source, evaluate, translate_all
from .flags import DATA_FILES, UsageError, build_parser, grid_value_parser, train_config
from .run_folder import holds_run, output_limit, remove_run
from .serve import Explorer, serve
from .splits import load_data, validation_pairs
from .train import Trainer, TrainingError


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
