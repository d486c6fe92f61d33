"""Masked softmax cross-entropy: the sequence loss of every model in lstm_np."""

import numpy as np

from .checks import check_int

__all__ = ["masked_cross_entropy"]


def masked_cross_entropy(logits, targets, mask, count=None):
    """Mean cross-entropy over the positions where mask is true, and its gradient.

    logits (..., V) float, targets (...) int in [0, V), mask (...) bool or 0/1  ->  (loss, dlogits)

        N        = Σ mask                                        (number of real tokens)
                   or `count`, given: these tokens are a share of a batch of `count` (parallel.py)
        loss     = -(1/N) Σ_{mask} log softmax(logits)[target]
        dlogits  = (softmax(logits) - onehot(target)) ⊙ mask / N      same shape and dtype as logits

    loss is a Python float (the sum is taken in float64). Raises ValueError if the mask has no true entry.
    """
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    mask = np.asarray(mask)
    if not np.issubdtype(logits.dtype, np.floating) or logits.ndim == 0:
        raise TypeError(f"logits must be a floating array of shape (..., V), got dtype {logits.dtype}, shape {logits.shape}")
    V = logits.shape[-1]
    if not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"targets must be an integer array, got dtype {targets.dtype}")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets must have shape {logits.shape[:-1]} (logits without its last axis), got {targets.shape}")
    if mask.shape != targets.shape:
        raise ValueError(f"mask must have the shape of targets {targets.shape}, got {mask.shape}")
    if mask.dtype != bool:
        if not np.all((mask == 0) | (mask == 1)):
            raise ValueError("mask must be boolean or hold only 0 and 1")
        mask = mask.astype(bool)
    if targets.size and (targets.min() < 0 or targets.max() >= V):
        raise ValueError(f"targets must be in [0, {V}), got values in [{targets.min()}, {targets.max()}]")
    real = int(mask.sum())
    if real == 0:
        raise ValueError("mask has no true entry: the mean cross-entropy over zero tokens is undefined")
    count = real if count is None else check_int("count", count, low=real)

    # Five passes over the (..., V) logits (max, subtract, exp, sum, scale), the exponentials computed once
    # and reused as the gradient:
    z = logits - np.max(logits, axis=-1, keepdims=True)                             # x_k - m  (<= 0)   (..., V)
    z_target = np.take_along_axis(z, targets[..., None], axis=-1)[..., 0]           # x_target - m       (...)
    e = np.exp(z, out=z)                                                             # e^{x_k - m}, in place
    total = e.sum(axis=-1)                                                           # Σ_j e^{x_j - m}    (...)
    logp_target = z_target - np.log(total)                                           # log softmax(x)[target]
    loss = -float(logp_target[mask].sum(dtype=np.float64)) / count                  # -(1/N) Σ_mask log p[target]

    weight = mask.astype(logits.dtype) / logits.dtype.type(count)                    # mask / N           (...)
    dlogits = e
    dlogits *= (weight / total)[..., None]                                           # softmax ⊙ mask / N
    np.put_along_axis(dlogits, targets[..., None],
                      np.take_along_axis(dlogits, targets[..., None], axis=-1) - weight[..., None],
                      axis=-1)                                                       # - onehot ⊙ mask / N
    return loss, dlogits
