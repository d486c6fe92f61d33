"""Training a Seq2Seq model: the loop, validation, checkpoints, exact resume (its data: splits.py).

The loop, one optimizer step at a time:
    1. take the next batch of the epoch's order (similar lengths grouped; the order is drawn from the data
       RNG at the start of each epoch, so a resumed run replays it exactly)
    2. loss = model.loss(src, tgt) (label-smoothed with --label-smoothing); model.backward(); clip the global
       gradient norm
    3. stop on a non-finite loss or gradient (keeping the last good checkpoint), else lr = schedule(step)
       and opt.step(); stop likewise if the update made a parameter overflow
    4. every `log_every` steps one log line; at each validation point (below) greedy exact match and token
       accuracy on the first `valid_size` held-out pairs, a point of the learning curve (`history`), the best
       weights kept, and a checkpoint written
    5. stop at --steps / --epochs / --max-seconds, at a validation point reaching --stop-at, or on SIGINT/SIGTERM
       (checkpoint written first)

Validation points: every `eval_every` steps when it is given; otherwise, under --max-seconds, each time another
tenth of the budget has passed (so a 30-second run spends its time training, not validating), and every 250
steps without a budget. The budget counts everything the loop does: the steps, validation and checkpoints. It
does not count loading the data and building the model before the first step, nor the final evaluation.

Learning rate: linear warm-up over `warmup_steps`, then cosine decay to `final_lr_fraction` × `lr` (10% unless
set) over the schedule's horizon: --decay-steps if given, else fitted to the --max-seconds budget (re-estimated
at each validation from the measured speed), else none (constant after warm-up). --steps only says when to stop, never the
shape of the schedule: that is what makes "--steps 20, then --resume --steps 40" equal to "--steps 40".
"""
import contextlib
import dataclasses
import math
import os
import signal
import time

import numpy as np

from .batch_stream import BatchStream
from .cell import peephole_lr_scale
from .checkpoint import MANIFEST, CheckpointDir, CheckpointError, assign_parameters, check_parameters, write_json
from .checks import check_number
from .config import TrainConfig
from .data import EOS, Vocab
from .evaluate import as_test_metrics, encode_source, evaluate
from .losses import check_smoothing
from .optim import Adam, WeightAverage
from .parallel import world as this_world
from .run_folder import load_model, output_limit, write_run_files
from .schedule import WarmupDecay
from .seq2seq import OUTPUT_BIAS_INITS, Seq2Seq, combine_lr_scale
from .splits import load_data, validation_pairs
from .train_state import TrainState

__all__ = ["TrainConfig", "Trainer", "TrainingError", "load_data"]

EVAL_STEPS = 250          # validation cadence without a time budget (when --eval-every is not given)
EVAL_FRACTION = 0.1       # ... and with one: each time this fraction of --max-seconds has passed


class TrainingError(Exception):
    """A training run that cannot go on (divergence); the message says what happened and what to try."""


class Trainer:
    """One training run (new, or resumed from cfg.out) of a TrainConfig; `run()` returns the final metrics.

    Its parts: `state` (TrainState: what a checkpoint records), `stream` (BatchStream: the batches),
    `schedule` (WarmupDecay: the learning rate, its horizon refitted under a time budget), `model` and `opt`.

    handle_signals: SIGINT/SIGTERM finish the current step, checkpoint and stop (a run in the main thread of
    its own process; a sweep's worker leaves signals to its engine).

    world: the processes training this one model (parallel.py), this process's by default: alone, or the MPI
    ranks that started it. Only rank 0 logs, writes the run folder and runs the final test; the others'
    `run()` returns {}."""

    def __init__(self, cfg, resume=False, log=print, handle_signals=True, world=None):
        if cfg.output_bias not in OUTPUT_BIAS_INITS:
            raise ValueError(f"output_bias must be one of {OUTPUT_BIAS_INITS}, got {cfg.output_bias!r}")
        check_smoothing("label_smoothing", cfg.label_smoothing)
        check_number("final_lr_fraction", cfg.final_lr_fraction, 0, 1)     # before the data loads (WarmupDecay's own)
        self.world = this_world() if world is None else world
        self.cfg, self.handle_signals = cfg, handle_signals
        self.log = log if self.world.rank == 0 else (lambda line: None)
        self.ckpt = CheckpointDir(cfg.out) if cfg.out else None
        self.splits, self.source = load_data(cfg)
        if resume:
            self._resume()
        else:
            src_tokens, tgt_tokens = cfg.side_tokens()
            self.src_vocab = Vocab.build([s for s, _ in self.splits["train"]], src_tokens, cfg.lower)
            self.tgt_vocab = Vocab.build([t for _, t in self.splits["train"]], tgt_tokens, cfg.lower)
            self.model = Seq2Seq(len(self.src_vocab), len(self.tgt_vocab), **cfg.model_kwargs())
            self.opt = self.optimizer()
            self.average = self.weight_average()
            self.data_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
            self.best_weights = None
            longest = max(len(self.tgt_vocab.encode(t)) for _, t in self.splits["train"])
            self.state = TrainState(max_len=output_limit(longest), horizon=cfg.decay_steps)
        self.train_src = [encode_source(self.src_vocab, s) for s, _ in self.splits["train"]]
        self.train_tgt = [self.tgt_vocab.encode(t) + [EOS] for _, t in self.splits["train"]]
        if not resume and cfg.output_bias == "prior":
            self.model.init_output_bias(np.bincount(np.concatenate(self.train_tgt), minlength=len(self.tgt_vocab)))
        self.stream = BatchStream(self.train_src, self.train_tgt, cfg.batch_size, self.data_rng, self.state)
        self.schedule = WarmupDecay(cfg.lr, cfg.warmup_steps,      # warm-up, then cosine decay to lr × the
                                    final_lr_fraction=cfg.final_lr_fraction)   # final fraction ...
        self.schedule.refit(self.state.horizon)                    # ... over the horizon (module docstring)
        self.valid_pairs = validation_pairs(cfg, self.splits)
        # An output longer than every reference is wrong whatever follows, so validation decodes no further
        self.valid_max_len = max(len(self.tgt_vocab.encode(t)) for _, t in self.valid_pairs) + 1
        self.stop_signal = None
        self._gathered_at = self.state.step     # the step at which the optimizer's state is whole on every rank

    def optimizer(self):
        """Adam over the model's parameters, the peephole weights at lr × peephole_lr_scale (the recipe) and
        attention's combine layer at lr × combine_lr_scale (why: seq2seq.combine_lr_scale)."""
        params = self.model.named_parameters()
        return Adam(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay,
                    lr_scale={**peephole_lr_scale(params, self.cfg.peephole_lr_scale),
                              **combine_lr_scale(params, self.cfg.combine_lr_scale)})

    def weight_average(self):
        """The average of the weights the optimizer visits (optim.WeightAverage), None without --average-decay."""
        if not self.cfg.average_decay:
            return None
        return WeightAverage(self.model.named_parameters(), self.cfg.average_decay)

    def training_state(self):
        """The arrays of a checkpoint's optimizer file: Adam's moments and, with one, the weight average's."""
        return {**self.opt.state_dict(), **(self.average.state_dict() if self.average is not None else {})}

    # ------------------------------------------------------------------------------------------------
    # checkpoints
    def _weights(self):
        return {name: value.copy() for name, value, _ in self.model.named_parameters()}

    def save(self, with_best=False):
        """Write a checkpoint of the current step (and the best weights, when they just changed). Every rank
        calls it during the run (they gather the optimizer's state); rank 0 writes."""
        if self.ckpt is None:
            return
        self.gather_training_state()
        if self.world.rank != 0:
            return
        s = self.state
        s.data_rng = self.data_rng.bit_generator.state
        s.dropout_rng = [lstm.rng.bit_generator.state for lstm in (self.model.encoder.lstm, self.model.decoder.lstm)]
        self.ckpt.save(s.step, self._weights(), self.training_state(), s.to_json(),
                       self.best_weights if with_best else None)

    def gather_training_state(self):
        """Make the optimizer's state and the weight average, of which each rank updated its share, whole on
        every rank (parallel.py), once per step: every rank calls it, so that finish(), on rank 0 alone,
        gathers nothing."""
        if self.state.step != self._gathered_at:
            self.world.gather_state(self.opt)
            if self.average is not None:
                self.world.gather_state(self.average)
            self._gathered_at = self.state.step

    def _resume(self):
        self.model, self.src_vocab, self.tgt_vocab, _ = load_model(self.cfg.out, which="weights")
        self.opt = self.optimizer()
        self.average = self.weight_average()
        try:
            arrays = self.ckpt.load("optimizer")
            averaged = {k: arrays.pop(k) for k in list(arrays) if k.startswith("average")}
            self.opt.load_state_dict(arrays)
            if self.average is not None:
                self.average.load_state_dict(averaged)
            elif averaged:
                raise ValueError("it holds a weight average, and this run keeps none")
        except ValueError as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"{self.ckpt.file(MANIFEST)}: optimizer state does not match ({e})") from None
        self.state = s = TrainState.from_json(self.ckpt.manifest().get("state"), self.ckpt.file(MANIFEST))
        self.data_rng = np.random.default_rng()
        self.data_rng.bit_generator.state = s.data_rng
        for lstm, rng_state in zip((self.model.encoder.lstm, self.model.decoder.lstm), s.dropout_rng):
            lstm.rng.bit_generator.state = rng_state
        self.best_weights = None
        if self.ckpt.manifest().get("best"):
            self.best_weights = self.ckpt.load("best")
            check_parameters(self.model.named_parameters(), self.best_weights, self.ckpt.current("best"))
        self.log(f"resumed {self.cfg.out} at step {s.step}")

    # ------------------------------------------------------------------------------------------------
    def validate(self):
        metrics, _ = evaluate(self.model, self.src_vocab, self.tgt_vocab, self.valid_pairs, self.valid_max_len)
        return metrics

    def validation_due(self, elapsed, last_validation):
        """Whether to validate after this step (module docstring: validation points). `elapsed` and
        `last_validation` are seconds of this run."""
        cfg, step = self.cfg, self.state.step
        if cfg.eval_every is not None or cfg.max_seconds is None:
            return step % (cfg.eval_every or EVAL_STEPS) == 0
        interval = EVAL_FRACTION * cfg.max_seconds
        # the final evaluation follows the budget anyway: none in its last tenth
        return elapsed - last_validation >= interval and cfg.max_seconds - elapsed >= interval

    def should_stop(self, run_start):
        cfg, s = self.cfg, self.state
        reached = cfg.stop_at is not None and bool(s.history) and s.history[-1]["exact_match"] >= cfg.stop_at
        over_time = cfg.max_seconds is not None and time.perf_counter() - run_start >= cfg.max_seconds
        return (self.world.agree_stop(over_time, self.stop_signal is not None) or reached   # rank 0's clock
                or (cfg.steps is not None and s.step >= cfg.steps)
                or (cfg.epochs is not None and self.stream.epochs_done() >= cfg.epochs))

    def run(self):
        """Train until a stop condition; then the final evaluation (None if stopped by a signal)."""
        cfg, s = self.cfg, self.state
        params = self.model.named_parameters()
        pieces = self.world.pieces(params)
        if self.ckpt is not None and s.step == 0 and self.world.rank == 0:
            write_run_files(cfg.out, dataclasses.asdict(cfg), self.model.config, self.src_vocab, self.tgt_vocab)
        n_params = sum(v.size for _, v, _ in params)
        self.log(f"data: {self.source}: {len(self.splits['train'])} train / {len(self.splits['valid'])} valid"
                 + (f" / {len(self.splits['test'])} test" if self.splits["test"] else "")
                 + f" pairs | vocab {len(self.src_vocab)} -> {len(self.tgt_vocab)} | {n_params:,} parameters")
        handlers = ({sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
                    if self.handle_signals else {})
        run_start, run_start_step = time.perf_counter(), s.step
        base_seconds = s.train_seconds
        window_start, window_steps = time.perf_counter(), 0
        last_validation = 0.0                   # seconds into this run
        try:
            while not self.should_stop(run_start):
                src, tgt = self.stream.next()
                self.model.zero_grad()
                rows, counts = self.world.rows(len(src))          # this process's share of the batch
                try:
                    with self.numerics("forward/backward pass", s.step + 1):
                        loss = self.model.loss(src, tgt, rows, label_smoothing=self.cfg.label_smoothing)
                        self.model.backward()
                except TrainingError:
                    if self.world.size == 1:
                        raise
                    loss = math.nan       # the other ranks see it in the summed loss: all stop alike below
                if not counts:
                    loss = 0.0
                    self.model.zero_grad()
                with self.numerics("forward/backward pass", s.step + 1):
                    loss, norm = self.world.sum_and_clip(params, loss, cfg.clip)   # the ranks' shares added up
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    raise self.diverged(f"loss {loss}, gradient norm {norm}", s.step + 1)
                self.opt.lr = self.schedule(s.step)
                with self.numerics("update", s.step + 1):
                    self.opt.step(pieces)                          # this rank's share of the parameters ...
                    if self.average is not None:
                        self.average.step(pieces)                  # ... and of their average ...
                self.world.share_weights(params)                   # ... and the other ranks' shares
                if not all(np.isfinite(value).all() for _, value, _ in params):
                    raise self.diverged(f"the update at lr {self.opt.lr:g} made parameters overflow", s.step + 1)
                s.step += 1
                s.final_loss = loss
                s.loss_window = [s.loss_window[0] + loss, s.loss_window[1] + 1]   # since the last validation
                window_steps += 1
                elapsed = time.perf_counter() - run_start
                if s.step % cfg.log_every == 0:
                    ms = 1000 * (time.perf_counter() - window_start) / window_steps
                    self.log(f"{self.progress(elapsed)} | loss {loss:.4f} | grad-norm {norm:.2f} | "
                             f"lr {self.opt.lr:.1e} | {ms:.0f} ms/step")
                    window_start, window_steps = time.perf_counter(), 0
                if self.world.from_root(self.validation_due(elapsed, last_validation)):
                    self._validate_and_save(run_start, run_start_step, base_seconds)
                    last_validation = time.perf_counter() - run_start
                    window_start, window_steps = time.perf_counter(), 0
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            s.train_seconds = base_seconds + time.perf_counter() - run_start
        self.save()
        if self.average is not None:
            self.gather_training_state()                   # the final evaluation reads the whole average
        if self.stop_signal is not None:
            return None
        if self.world.rank != 0:
            return {}
        with self.numerics("final evaluation", s.step):
            return self.finish()

    def diverged(self, what, step):
        """The TrainingError of a non-finite `step`: what happened, what is kept, what to try."""
        cfg = self.cfg
        if self.ckpt is not None and self.ckpt.exists():
            kept = f"the last good checkpoint (step {self.ckpt.manifest()['step']}) is kept in {cfg.out}"
        else:
            kept = "no checkpoint had been written yet"
        return TrainingError(f"training diverged at step {step} ({what}); {kept}. Try a lower --lr (now "
                             f"{cfg.lr:g}) or a smaller --clip (now {cfg.clip:g}).")

    @contextlib.contextmanager
    def numerics(self, where, step):
        """Overflow inside the model is reported once, as a divergence: numpy's warnings are silenced (the loop
        checks loss, gradients and parameters itself), and the model's own NaN/Inf input checks, which fire
        when one layer hands non-finite activations to the next, become a TrainingError."""
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                yield
        except ValueError as e:
            if "NaN or Inf" not in str(e):
                raise
            raise self.diverged(f"non-finite values in the {where}: {e}", step) from None

    def progress(self, elapsed):
        """The head of a log line: "step 120/2000", or under a time budget "step 120 | 8 s, 22 s left"."""
        cfg, step = self.cfg, self.state.step
        if cfg.max_seconds is not None and cfg.steps is None:
            return f"step {step} | {elapsed:.0f} s, {max(0.0, cfg.max_seconds - elapsed):.0f} s left"
        return f"step {step}/{cfg.steps if cfg.steps is not None else '?'}"

    def _on_signal(self, signum, frame):
        self.stop_signal = signum  # finish the current step, checkpoint, and stop

    def _validate_and_save(self, run_start, run_start_step, base_seconds):
        """Validate, add the point to the learning curve (with the mean training loss since the previous
        point), keep the best weights, refit the decay, checkpoint."""
        cfg, s = self.cfg, self.state
        started = time.perf_counter()
        m = None
        if self.world.rank == 0:                                        # validated once, the result shared
            with self.numerics("validation", s.step):
                m = self.validate()
            m = {"exact_match": m["exact_match"], "token_accuracy": m["token_accuracy"],
                 "seconds": round(base_seconds + time.perf_counter() - run_start, 3)}
        m = self.world.from_root(m)
        took = time.perf_counter() - started
        loss_sum, n = s.loss_window
        s.history.append({"step": s.step, "seconds": m["seconds"],
                          "exact_match": m["exact_match"], "token_accuracy": m["token_accuracy"],
                          "loss": loss_sum / n})
        s.loss_window = [0.0, 0]
        score = [m["exact_match"], m["token_accuracy"]]                 # ties on exact match: token accuracy
        improved = s.best_valid is None or score > s.best_valid
        if improved:
            s.best_valid, s.best_step = score, s.step
            self.best_weights = self._weights()
        self.log(f"valid @ step {s.step} | exact match {m['exact_match']:.4f} | token accuracy "
                 f"{m['token_accuracy']:.4f} | {took:.1f} s" + (" | best" if improved else ""))
        if cfg.max_seconds is not None and cfg.decay_steps is None:
            elapsed = time.perf_counter() - run_start          # fit the decay to what the budget allows
            rate = (s.step - run_start_step) / max(elapsed, 1e-9)
            s.horizon = self.world.from_root(int(s.step + max(0.0, cfg.max_seconds - elapsed) * rate))
            self.schedule.refit(s.horizon)
        self.save(with_best=improved)

    def finish(self):
        """Final evaluation, on the test set, of the weights that validate best: the last ones, the best validated
        during the run, or (with --average-decay) their average; ties go to the last, then the best."""
        cfg, s = self.cfg, self.state
        params = self.model.named_parameters()
        last = self.validate()
        chosen, score = "last", [last["exact_match"], last["token_accuracy"]]
        if self.best_weights is not None and s.best_valid > score:
            chosen, score = "best", s.best_valid
        averaged = None
        if self.average is not None and self.average.step_count > 0:
            last_weights, averaged = self._weights(), self.average.averaged()
            assign_parameters(params, averaged, "averaged weights")
            m = self.validate()
            assign_parameters(params, last_weights, "last weights")
            self.log(f"averaged weights (decay {cfg.average_decay:g}): validation exact match {m['exact_match']:.4f}, "
                     f"last weights {last['exact_match']:.4f}")
            if [m["exact_match"], m["token_accuracy"]] > score:
                chosen, score = "average", [m["exact_match"], m["token_accuracy"]]
        if chosen == "best":
            assign_parameters(params, self.best_weights, "best weights")
            self.log(f"using the best validated weights (step {s.best_step}, exact match {s.best_valid[0]:.4f})")
        elif chosen == "average":
            # The average becomes the checkpoint's best (what `translate`, `serve` and a resumed run's final
            # test see); the checkpoint's weights stay the last ones, from which training would go on.
            s.best_valid, s.best_step = score, s.step
            self.best_weights = averaged
            self.save(with_best=True)
            assign_parameters(params, averaged, "averaged weights")
            self.log(f"using the averaged weights (exact match {score[0]:.4f})")
        elif s.best_step != s.step or not all(np.array_equal(self.best_weights[name], value)
                                              for name, value, _ in params):
            # The last weights win: they become the checkpoint's best, so that `translate`, `serve` and a resumed
            # run see the weights this final test scores (also when the best of this step is an average).
            s.best_valid, s.best_step = score, s.step
            self.best_weights = self._weights()
            self.save(with_best=True)
        test_pairs = self.splits["test"] or self.splits["valid"]
        metrics, examples = evaluate(self.model, self.src_vocab, self.tgt_vocab, test_pairs, s.max_len,
                                     cfg.beam_size, with_bleu=True)
        result, line = as_test_metrics(metrics)
        result.update({"test_set": "test" if self.splits["test"] else "valid",
                       "valid_exact_match": score[0], "weights": chosen,
                       "final_loss": s.final_loss, "train_seconds": round(s.train_seconds, 3),
                       "steps": s.step, "epochs": s.epoch, "beam_size": cfg.beam_size, "workers": self.world.size,
                       "history": s.history, "config": dataclasses.asdict(cfg)})
        self.log(f"test: {line} | {s.step} steps in {s.train_seconds:.0f} s")
        for src, refs, out in examples[:5]:
            ok = out in refs
            self.log(f"  [{'ok' if ok else '--'}] {src!r} -> {out!r}" + ("" if ok else f"   (expected {refs[0]!r})"))
        if cfg.metrics_out:
            os.makedirs(os.path.dirname(os.path.abspath(cfg.metrics_out)), exist_ok=True)
            write_json(cfg.metrics_out, result)
        return result
