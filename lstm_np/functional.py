"""Numerically stable elementwise math: log-softmax and softmax (the loss, decoding and attention use
them), inverted dropout's masks (every dropout of the models), and an exactly rounded fused multiply-add (the
optimizers use it to match torch's bits).

The LSTM gates' σ and tanh live in cell.py, next to the equations they implement.
"""

import numpy as np

__all__ = ["log_softmax", "softmax", "dropout_mask", "fma"]


def log_softmax(x, axis=-1):
    """log softmax(x)_k = x_k - m - log Σ_j e^{x_j - m},  m = max_j x_j, along `axis`.

    Subtracting the maximum makes every exponent <= 0, so nothing overflows and the largest term of the
    sum is exactly 1 (the log never sees 0). Same shape and dtype as x.
    """
    z = x - np.max(x, axis=axis, keepdims=True)  # x_k - m  (<= 0)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def softmax(x, axis=-1):
    """softmax(x)_k = e^{x_k - m} / Σ_j e^{x_j - m},  m = max_j x_j, along `axis`; same shape and dtype as x.

    An entry of -inf (a masked position) gets exactly 0, as long as its slice holds a finite entry.
    """
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def dropout_mask(rng, shape, p, dtype, rows=None):
    """Inverted dropout's mask of a time-major `shape` (T, B, ...): 0 with probability p, else 1/(1-p), so that
    E[mask] = 1 and eval mode needs no rescaling.

    rows = (lo, hi, B_all): this batch is rows lo:hi of a batch of B_all rows (a data-parallel worker's share,
    parallel.py). The mask of the whole batch is drawn and rows lo:hi kept, so every worker draws what one
    process would, keeps its own rows, and leaves `rng` in the same state as the others.
    """
    if rows is None:
        keep = rng.random(shape) >= p
    else:
        lo, hi, batch = rows
        keep = rng.random((shape[0], batch) + tuple(shape[2:]))[:, lo:hi] >= p
    return keep.astype(dtype) / (1.0 - p)                    # m ∈ {0, 1/(1-p)}


def _two_sum(x, y):
    """s, err with s = RN(x + y) and s + err == x + y exactly (Knuth)."""
    s = x + y
    y_part = s - x
    return s, (x - (s - y_part)) + (y - y_part)


def _split(x, splitter):
    """hi, lo with hi + lo == x exactly, each with at most half the mantissa, so hi·hi' is exact (Veltkamp)."""
    t = splitter * x
    hi = t - (t - x)
    return hi, x - hi


_FMA_BLOCK = 1 << 15  # elements per block: a block's ~10 temporaries stay in cache (3x faster than whole arrays)


def fma(a, b, c):
    """a·b + c with ONE rounding, elementwise: a fused multiply-add, which numpy has no ufunc for.

    a, c arrays of one floating dtype, b an array or a Python number (cast to that dtype, as torch casts a
    scalar `alpha`)  ->  array of the broadcast shape and that dtype. torch's CPU kernels for
    `add(x, y, alpha=)` and `lerp` call a hardware FMA, so the optimizers need one to match torch to the
    last bit. Emulated exactly in the inputs' own precision (Boldo & Melquiond 2008, "Emulation of FMA and
    correctly rounded sums: proved algorithms using rounding to odd"):

        p + e = a·b       exactly   (Dekker's product on Veltkamp halves)
        s + t = c + p     exactly   (Knuth's two-sum)
        u     = RO(t + e)           (rounded to odd: if inexact, the neighbour with an odd last bit)
        z     = RN(s + u) = RN(a·b + c)

    Exact whenever a·b neither overflows nor underflows and |a|, |b| are not within ~2^27 (float64) of the
    overflow threshold; elsewhere (inf, nan, near-overflow) it returns the plain a·b + c. Cost: ~30 array
    operations instead of 2, run block by block.
    """
    a, c = np.asarray(a), np.asarray(c)
    dtype = np.result_type(a, c)
    b = np.asarray(b, dtype=dtype)
    shape = np.broadcast_shapes(a.shape, b.shape, c.shape)
    a, c = (np.broadcast_to(x, shape).reshape(-1) for x in (a, c))
    b = b.reshape(1) if b.ndim == 0 else np.broadcast_to(b, shape).reshape(-1)
    out = np.empty(a.size, dtype)
    for i in range(0, a.size, _FMA_BLOCK):
        block = slice(i, i + _FMA_BLOCK)
        out[block] = _fma_block(a[block], b if b.size == 1 else b[block], c[block])
    return out.reshape(shape)


def _fma_block(a, b, c):
    """fma on 1-d arrays of one dtype (b may have length 1); see fma."""
    dtype = a.dtype
    splitter = dtype.type(2 ** ((np.finfo(dtype).nmant + 2) // 2) + 1)  # 2^27 + 1 for float64, 2^12 + 1 for float32
    with np.errstate(over="ignore", invalid="ignore"):
        p = a * b
        a_hi, a_lo = _split(a, splitter)
        b_hi, b_lo = _split(b, splitter)
        e = a_lo * b_lo - (((p - a_hi * b_hi) - a_lo * b_hi) - a_hi * b_lo)  # p + e == a·b (Dekker)
        s, t = _two_sum(c, p)                                                 # s + t == c + p
        u, r = _two_sum(t, e)                                                 # u + r == t + e
        # Round to odd: truncate u toward zero (one ulp down in magnitude when the exact t + e lies below
        # |u|), then set the last bit when inexact. On the integer view, ±1 steps one ulp in magnitude.
        bits = u.view(f"i{dtype.itemsize}")
        inexact = r != 0
        bits -= inexact & (np.signbit(r) != np.signbit(u))
        bits |= inexact
        z = s + u
        if not np.all(np.isfinite(z)):
            z = np.where(np.isfinite(z), z, p + c)
        return z
