"""The state of a training run that a checkpoint's manifest holds, typed, and how older checkpoints' states read.

`TrainState.to_json()` is what a checkpoint writes; `TrainState.from_json(d, path)` reads one written by this or
any earlier version of lstm_np: the state is migrated version by version to today's (MIGRATIONS), then checked
field by field, so that a damaged manifest is refused with a CheckpointError naming it instead of failing later.

Versions:  1  (no "version" key) the state before runs recorded their learning curve
           2  + `history` (the validation points so far) and `loss_window` (the training losses since the last)
"""
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .checkpoint import CheckpointError
from .checks import check_int, check_number

VERSION = 2
HISTORY_KEYS = ("step", "seconds", "exact_match", "token_accuracy", "loss")   # one validation point


@dataclass
class TrainState:
    max_len: int                   # longest output of the final test: run_folder.output_limit(longest target)
    horizon: int = None            # the step where the learning-rate decay ends; None: no decay (yet)
    step: int = 0                  # optimizer steps taken
    epoch: int = 0                 # passes over the training data completed
    pos: int = 0                   # batches of the current epoch taken
    epoch_rng: dict = None         # data RNG state at the current epoch's start (None before the first batch)
    data_rng: dict = None          # data RNG state          } as of the last checkpoint: the trainer sets them
    dropout_rng: list = None       # [encoder, decoder] RNGs } before it writes one
    best_valid: list = None        # [exact match, token accuracy] of the best validation point (ties: accuracy)
    best_step: int = None          # ... and its step
    final_loss: float = None       # the last step's training loss
    train_seconds: float = 0.0     # training time of every run of it (resumes add up)
    history: list = field(default_factory=list)                  # the validation points (HISTORY_KEYS) so far
    loss_window: list = field(default_factory=lambda: [0.0, 0])  # [sum, count] of the losses since the last point

    def to_json(self):
        return {"version": VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, d, path):
        """The state in a manifest (of any version) at `path`; CheckpointError naming `path` if it is damaged."""
        try:
            if not isinstance(d, dict):
                raise ValueError(f"expected a JSON object, got {type(d).__name__}")
            d = dict(d)
            version = check_int("version", d.pop("version", 1), 1, VERSION)
            for migrate in MIGRATIONS[version - 1:]:
                migrate(d)
            names = {f.name for f in dataclasses.fields(cls)}
            missing, unknown = sorted(names - d.keys()), sorted(d.keys() - names)
            if missing or unknown:
                raise ValueError(f"missing {missing}" if missing else f"unknown entries {unknown}")
            state = cls(**d)
            state.check()
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: damaged training state ({e})") from None
        return state

    def check(self):
        """ValueError naming the first field that a run could not continue from."""
        check_int("max_len", self.max_len, low=1)
        for name in ("step", "epoch", "pos") + (("horizon",) if self.horizon is not None else ()) \
                + (("best_step",) if self.best_step is not None else ()):
            check_int(name, getattr(self, name), low=0)
        if self.best_valid is not None:
            if not (isinstance(self.best_valid, list) and len(self.best_valid) == 2):
                raise ValueError(f"best_valid is {self.best_valid!r:.200}")
            for value in self.best_valid:
                check_number("best_valid", value)
        if self.final_loss is not None:
            check_number("final_loss", self.final_loss)
        check_number("train_seconds", self.train_seconds)
        if not (isinstance(self.history, list)
                and all(isinstance(h, dict) and set(h) == set(HISTORY_KEYS) for h in self.history)):
            raise ValueError(f"history is {self.history!r:.200}")
        if not (isinstance(self.loss_window, list) and len(self.loss_window) == 2):
            raise ValueError(f"loss_window is {self.loss_window!r:.200}")
        check_number("loss_window", self.loss_window[0])
        check_int("loss_window", self.loss_window[1], low=0)
        if not (isinstance(self.dropout_rng, list) and len(self.dropout_rng) == 2):
            raise ValueError(f"dropout_rng is {self.dropout_rng!r:.200}")
        epoch_rng = [] if self.epoch_rng is None else [self.epoch_rng]
        for rng_state in [self.data_rng] + self.dropout_rng + epoch_rng:
            np.random.default_rng().bit_generator.state = rng_state   # raises on anything malformed


def _add_learning_curve(d):
    """1 -> 2: a run saved before learning curves continues with an empty one."""
    d.setdefault("history", [])
    d.setdefault("loss_window", [0.0, 0])


MIGRATIONS = (_add_learning_curve,)   # MIGRATIONS[v - 1] turns a version-v state into version v + 1
