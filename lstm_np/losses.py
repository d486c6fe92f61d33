"""Masked softmax cross-entropy: the sequence loss of every model in lstm_np, with optional label smoothing."""

import numpy as np

from .checks import check_int, check_number

__all__ = ["masked_cross_entropy"]


def check_smoothing(name, value):
    """A label-smoothing ε as a float if it is a number in [0, 1), else ValueError naming `name`."""
    return check_number(name, value, low=0, high=1, high_inclusive=False)


def masked_cross_entropy(logits, targets, mask, count=None, smoothing=0.0):
    """Mean cross-entropy over the positions where mask is true, and its gradient.

    logits (..., V) float, targets (...) int in [0, V), mask (...) bool or 0/1  ->  (loss, dlogits)

        N        = Σ mask                                        (number of real tokens)
                   or `count`, given: these tokens are a share of a batch of `count` (parallel.py)
        q        = (1 - ε) onehot(target) + ε / V                 the target distribution; ε = `smoothing`
        loss     = -(1/N) Σ_{mask} Σ_k q_k log softmax(logits)_k
                 = -(1/N) Σ_{mask} [(1 - ε) log p_target + (ε/V) Σ_k log p_k]
        dlogits  = (softmax(logits) - q) ⊙ mask / N              same shape and dtype as logits

    ε = 0 (the default) is the plain cross-entropy. Label smoothing (ε > 0, e.g. 0.1) asks for a little
    probability on every token, which keeps the model from growing its logits without bound on the training
    data. loss is a Python float (the sums are taken in float64). Raises ValueError if the mask has no true
    entry or smoothing is outside [0, 1).
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
    eps = check_smoothing("smoothing", smoothing)

    # Five passes over the (..., V) logits (max, subtract, exp, sum, scale; two more with smoothing), the
    # exponentials computed once and reused as the gradient:
    z = logits - np.max(logits, axis=-1, keepdims=True)                             # x_k - m  (<= 0)   (..., V)
    z_target = np.take_along_axis(z, targets[..., None], axis=-1)[..., 0]           # x_target - m       (...)
    z_sum = z.sum(axis=-1, dtype=np.float64) if eps else None                       # Σ_k (x_k - m)      (...)
    e = np.exp(z, out=z)                                                             # e^{x_k - m}, in place
    total = e.sum(axis=-1)                                                           # Σ_j e^{x_j - m}    (...)
    log_total = np.log(total)
    logp_target = z_target - log_total                                               # log softmax(x)[target]
    loss = -float(logp_target[mask].sum(dtype=np.float64)) / count                  # -(1/N) Σ_mask log p[target]
    if eps:
        logp_sum = z_sum - V * log_total                                             # Σ_k log p_k        (...)
        loss = (1 - eps) * loss - eps / V * float(logp_sum[mask].sum()) / count

    weight = mask.astype(logits.dtype) / logits.dtype.type(count)                    # mask / N           (...)
    dlogits = e
    dlogits *= (weight / total)[..., None]                                           # softmax ⊙ mask / N
    if eps:
        dlogits -= (weight * logits.dtype.type(eps / V))[..., None]                  # - (ε/V) ⊙ mask / N
    np.put_along_axis(dlogits, targets[..., None],
                      np.take_along_axis(dlogits, targets[..., None], axis=-1)
                      - (weight * logits.dtype.type(1 - eps))[..., None],
                      axis=-1)                                                       # - (1-ε) onehot ⊙ mask / N
    return loss, dlogits
