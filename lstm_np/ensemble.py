"""Ensembles: trained Seq2Seq models of the same vocabularies decoding together.

At every decoding step each member m scores the next token given the source and the prefix decoded so far,
and the ensemble's distribution is the mean of theirs:

    p(y_t | y_<t, x) = (1/M) Σ_m p_m(y_t | y_<t, x)
    log p            = logsumexp_m(log p_m) - log M

Greedy and beam search (decoding.py) run over an Ensemble unchanged: it offers what they call, `encode(src)`
and `decoder.forward(ids, h, c, summary, keys, mask)`, whose "logits" are the ensemble's log p (normalised
already, so the log-softmax decoding takes of them leaves them as they are). The members' states travel side by
side along the last axis (keys (B, S, ΣHd), h and c (L, B, ΣHd), summary (B, ΣHd)), so the rows beam search
picks and repeats are every member's rows at once.

Members trained with different seeds disagree where each is unsure, and their mean is right more often than
any of them (the G2P recipe, docs/results.md). Models to be ensembled share their validation words
(`--split-seed`), so that the ensemble's validation score counts no word any member trained on.

`load_ensemble(folders)`: each folder a run written by `lstm-np train` (its checkpoint's best weights), or a
folder whose sub-folders are such runs (what `make g2p` writes).
"""
import contextlib
import os

import numpy as np

from .checkpoint import CheckpointError
from .checks import check_number, check_size
from .config import TrainConfig
from .decoding import beam_search, greedy
from .functional import log_softmax
from .run_folder import holds_run, load_model, saved_train_options, trained_max_len
from .seq2seq import Seq2Seq

__all__ = ["Ensemble", "ensemble_folders", "load_ensemble", "shared_split"]


class Ensemble:
    """Decoding with the mean of the members' next-token probabilities (module docstring). Members: Seq2Seq
    models with the same vocabulary sizes and the same number of decoder layers."""

    def __init__(self, models):
        models = list(models)
        if not models:
            raise ValueError("models is empty: an ensemble needs at least one model")
        for i, m in enumerate(models):
            if not isinstance(m, Seq2Seq):
                raise TypeError(f"models[{i}] must be a Seq2Seq, got {type(m).__name__}")
            if m.dtype != models[0].dtype:
                raise ValueError(f"models must share dtype: {models[0].dtype} and {m.dtype} (models[{i}])")
        first = models[0].config
        for m in models[1:]:
            for key in ("src_vocab_size", "tgt_vocab_size", "num_layers"):
                if m.config[key] != first[key]:
                    raise ValueError(f"models must share {key}: {first[key]} and {m.config[key]}")
        self.models = models
        self.config = {key: first[key] for key in ("src_vocab_size", "tgt_vocab_size", "num_layers")}
        self.attention = None                     # no single attention to show (translate --plot-attention)
        self.decoder = _Decoders(models)
        self.decoder.sizes = [m.decoder.lstm.hidden_size for m in models]    # each member's decoder state width

    def encode(self, src):
        """src (B, S) -> keys (B, S, ΣHd), h0, c0 (L, B, ΣHd), mask (B, S), summary (B, ΣHd): every member's,
        side by side along the last axis."""
        parts = [m.encode(src) for m in self.models]
        mask = parts[0][3]                                  # the source's padding: the same for every member
        return (np.concatenate([p[0] for p in parts], axis=2), np.concatenate([p[1] for p in parts], axis=2),
                np.concatenate([p[2] for p in parts], axis=2), mask, np.concatenate([p[4] for p in parts], axis=1))

    def translate(self, src, max_len=50, beam_size=1, length_penalty=1.0):
        """Decode src (B, S) ids; -> list of B token-id lists with EOS stripped (as Seq2Seq.translate)."""
        beam_size, max_len = check_size("beam_size", beam_size), check_size("max_len", max_len)
        check_number("length_penalty", length_penalty, low=0)
        with contextlib.ExitStack() as stack:
            for m in self.models:
                stack.enter_context(m._decoding())          # eval mode, and back as it was
            if beam_size == 1:
                return greedy(self, src, max_len, length_penalty)[0]
            return beam_search(self, src, max_len, beam_size, length_penalty)


class _Decoders:
    """The members' decoders as one: forward() splits the states, runs each member's step and returns the
    ensemble's log-probabilities in place of logits, and the members' new states side by side."""

    def __init__(self, models):
        self.models, self.sizes = models, None

    def forward(self, ids, h0, c0, summary, keys, mask):
        """ids (T, B) ... -> log p (T, B, V) of the mean distribution, (h_n, c_n) side by side, None."""
        at = np.cumsum(self.sizes)[:-1]
        logps, hs, cs = [], [], []
        for m, h, c, s, k in zip(self.models, np.split(h0, at, axis=2), np.split(c0, at, axis=2),
                                 np.split(summary, at, axis=1), np.split(keys, at, axis=2)):
            logits, (h_n, c_n), _ = m.decoder.forward(ids, h, c, s, k, mask)
            logps.append(log_softmax(logits.astype(np.float64)))        # log p_m     (T, B, V)
            hs.append(h_n)
            cs.append(c_n)
        stacked = np.stack(logps)                                         # (M, T, B, V)
        top = stacked.max(axis=0)
        log_mean = top + np.log(np.exp(stacked - top).mean(axis=0))      # log (1/M) Σ_m p_m, without overflow
        return log_mean, (np.concatenate(hs, axis=2), np.concatenate(cs, axis=2)), None


def ensemble_folders(paths):
    """The run folders that `paths` name: each path a run, or a folder whose sub-folders are runs (sorted by
    name); CheckpointError naming a path that is neither."""
    folders = []
    for path in paths:
        if holds_run(path):
            folders.append(path)
            continue
        inside = sorted(os.path.join(path, name) for name in os.listdir(path)) if os.path.isdir(path) else []
        runs = [f for f in inside if os.path.isdir(f) and holds_run(f)]
        if not runs:
            raise CheckpointError(f"{path}: neither a run written by 'lstm-np train' nor a folder of such runs")
        folders += runs
    for i, folder in enumerate(folders):
        if any(os.path.samefile(folder, earlier) for earlier in folders[:i]):
            raise CheckpointError(f"{folder} is named twice: each run joins an ensemble once")
    return folders


def load_ensemble(paths):
    """(model, src_vocab, tgt_vocab, max_len, folders) of the runs `paths` name (ensemble_folders): the
    Seq2Seq itself for one run, an Ensemble of their best weights for several; max_len the longest output
    limit the runs' final tests decoded with (None if none says). CheckpointError when their vocabularies
    differ."""
    folders = ensemble_folders(paths)
    models, src_vocab, tgt_vocab = [], None, None
    for folder in folders:
        model, src, tgt, _ = load_model(folder, which="best")
        if src_vocab is None:
            src_vocab, tgt_vocab = src, tgt
        elif (src.to_dict(), tgt.to_dict()) != (src_vocab.to_dict(), tgt_vocab.to_dict()):
            raise CheckpointError(f"{folder}: its vocabularies differ from {folders[0]}'s; an ensemble's models "
                                  f"must be trained on the same data")
        models.append(model)
    try:
        model = models[0] if len(models) == 1 else Ensemble(models)
    except ValueError as e:
        raise CheckpointError(f"{', '.join(folders)}: {e}") from None
    limits = [n for n in (trained_max_len(f) for f in folders) if n is not None]
    return model, src_vocab, tgt_vocab, max(limits) if limits else None, folders


def shared_split(folders):
    """The training options the runs in `folders` share for their held-out words (train file, seeds of the
    split, held-out fraction and size); CheckpointError when they differ (their validation words would)."""
    keys = ("train", "valid", "valid_fraction", "valid_size", "task")
    options = []
    for folder in folders:
        cfg = TrainConfig.saved(saved_train_options(folder))
        options.append({**{k: getattr(cfg, k) for k in keys}, "split": cfg.held_out_seed()})
    for folder, o in zip(folders[1:], options[1:]):
        if o != options[0]:
            raise CheckpointError(f"{folder}: holds out other validation words than {folders[0]} (train with the "
                                  f"same data and --split-seed)")
    return saved_train_options(folders[0])
