"""A run's data: its train, validation and test pairs, read from a built-in task or TSV files, with the
validation words held out of the training file when no --valid file is given: whole sources, so that no source
is in both, drawn with --split-seed (else --seed), so that runs with the same split seed hold out the same words."""
import numpy as np

from . import tasks as task_lib
from .data import read_tsv

__all__ = ["load_data", "validation_pairs"]


def load_data(cfg):
    """{"train", "valid", "test"} lists of (src, tgt) text pairs, and a description of where they came from."""
    if cfg.task is not None:
        return task_lib.make_splits(cfg.task, seed=0), f"task {cfg.task}"
    train = read_tsv(cfg.train)
    if cfg.valid is not None:
        valid = read_tsv(cfg.valid)
    else:  # hold out whole sources, so no source is in both
        sources = sorted({s for s, _ in train})
        rng = np.random.default_rng(cfg.held_out_seed())
        n = max(1, min(int(len(sources) * cfg.valid_fraction), 2000))
        held = set(rng.permutation(len(sources))[:n].tolist()) if len(sources) > 1 else set()
        held_src = {sources[i] for i in held}
        valid = [p for p in train if p[0] in held_src] or train[:1]
        train = [p for p in train if p[0] not in held_src] or train
    test = read_tsv(cfg.test) if cfg.test is not None else None
    return {"train": train, "valid": valid, "test": test}, cfg.train


def validation_pairs(cfg, splits):
    """The pairs a run validates on: the first --valid-size of its held-out (or --valid) pairs."""
    return splits["valid"][:cfg.valid_size]
