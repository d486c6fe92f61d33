"""The learning-rate schedule: a linear warm-up, then a cosine or linear decay to a fraction of the base rate.

`lstm-np train` builds one per run (train.py), refitting its horizon to a time budget as it learns its speed;
the optimizers (optim.py) take the rate it gives for each step.
"""

import math

from .checks import check_int, check_number

__all__ = ["WarmupDecay"]


class WarmupDecay:
    """Learning rate for optimizer step `step` (0-based): linear warm-up, then cosine or linear decay, or none.

        min_lr = final_lr_fraction · base_lr
        warm   = min(warmup_steps, total_steps)      (a horizon refitted below the warm-up cuts it short)
        1) step < warm:           lr = base_lr · (step + 1) / warm
                                  linear, on the line through 0 at step -1, so step 0 already moves and
                                  step warm - 1 reaches base_lr
        2) total_steps is None:   lr = base_lr, constant after the warm-up (no horizon: no decay)
        3) step >= total_steps:   lr = min_lr, constant from then on
        4) otherwise:             progress = (step - warm) / (total_steps - warm)   in [0, 1)
                                  coeff = (1 + cos(π · progress)) / 2     (kind="cosine")
                                  coeff = 1 - progress                    (kind="linear")
                                  lr = min_lr + coeff · (base_lr - min_lr)

    `refit(total_steps)` moves the horizon (a trainer fitting the decay to a time budget does so as it learns
    its speed); the learning rate of a step depends only on the step and the horizon at that moment.
    """

    def __init__(self, base_lr, warmup_steps, total_steps=None, final_lr_fraction=0.1, kind="cosine"):
        self.base_lr = check_number("base_lr", base_lr, low=0)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, low=0)
        if total_steps is not None and check_int("total_steps", total_steps, low=0) < warmup_steps:
            raise ValueError(f"total_steps ({total_steps}) must be >= warmup_steps ({warmup_steps})")
        self.refit(total_steps)
        self.final_lr_fraction = check_number("final_lr_fraction", final_lr_fraction, 0, 1)
        if kind not in ("cosine", "linear"):
            raise ValueError(f"kind must be 'cosine' or 'linear', got {kind!r}")
        self.kind = kind

    def refit(self, total_steps):
        """Set the horizon: the step where the decay ends (None: no decay)."""
        self.total_steps = None if total_steps is None else check_int("total_steps", total_steps, low=0)

    def __call__(self, step):
        check_int("step", step, low=0)
        total = self.total_steps
        warm = self.warmup_steps if total is None else min(self.warmup_steps, total)
        if step < warm:                                                        # 1) warm-up
            return self.base_lr * (step + 1) / warm
        if total is None:                                                      # 2) no decay
            return self.base_lr
        min_lr = self.final_lr_fraction * self.base_lr
        if step >= total:                                                      # 3) after the end
            return min_lr
        progress = (step - warm) / (total - warm)                              # 4) decay
        coeff = 0.5 * (1 + math.cos(math.pi * progress)) if self.kind == "cosine" else 1 - progress
        return min_lr + coeff * (self.base_lr - min_lr)
