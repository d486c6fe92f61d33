"""functional: log-softmax and softmax at extreme inputs, and the exactly rounded fma."""

import warnings
from fractions import Fraction

import numpy as np
import pytest

from lstm_np import functional as F


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e30), (np.float64, 1e300)])
def test_log_softmax_of_huge_logits_is_finite(dtype, big):
    x = np.array([[big, 0.0, -big], [1e4, 1e4 - 1, -1e4]], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        logp, p = F.log_softmax(x), F.softmax(x)
    assert logp.dtype == dtype and p.dtype == dtype
    assert np.all(np.isfinite(logp)) and np.all(np.isfinite(p))
    assert logp[0, 0] == 0 and p[0, 0] == 1
    np.testing.assert_allclose(p.sum(axis=-1), 1, rtol=1e-6)


def test_log_softmax_matches_the_naive_formula_on_small_logits():
    x = np.random.default_rng(0).standard_normal((3, 4, 5))
    for axis in (-1, 0, 1):
        naive = x - np.log(np.sum(np.exp(x), axis=axis, keepdims=True))
        np.testing.assert_allclose(F.log_softmax(x, axis=axis), naive, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(F.softmax(x, axis=axis), np.exp(naive), rtol=1e-13)


def nearest(value, dtype):
    """The float of `dtype` nearest to the exact rational `value` (ties to even)."""
    guess = dtype(float(value))
    candidates = [np.nextafter(guess, dtype(-np.inf)), guess, np.nextafter(guess, dtype(np.inf))]
    bits = lambda c: int(np.asarray(c).view(f"i{np.dtype(dtype).itemsize}"))
    return min(candidates, key=lambda c: (abs(Fraction(float(c)) - value), bits(c) & 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fma_is_rounded_once(dtype):
    rng = np.random.default_rng(0)
    eps = np.finfo(dtype).eps
    a = (rng.standard_normal(400) * 10.0 ** rng.integers(-4, 4, 400)).astype(dtype)
    b = dtype(rng.standard_normal())
    p = a * b
    c = np.concatenate([  # the hard cases: cancellation, and c far below or above a·b
        -p[:100] * (1 + eps * rng.integers(-3, 4, 100)).astype(dtype),
        p[100:200] * dtype(2.0 ** -30) * rng.choice([-1, 1], 100).astype(dtype),
        p[200:300] * dtype(2.0 ** 30),
        rng.standard_normal(100).astype(dtype),
    ]).astype(dtype)
    expected = np.array([nearest(Fraction(float(x)) * Fraction(float(b)) + Fraction(float(z)), dtype)
                         for x, z in zip(a, c)], dtype=dtype)
    got = F.fma(a, b, c)
    assert got.dtype == dtype
    assert np.array_equal(got, expected), f"{np.sum(got != expected)} of {a.size} not correctly rounded"
    assert np.sum((a * b + c) != expected) > 20, "the cases should be hard enough to defeat a*b + c"


def test_fma_blocks_broadcasting_scalars_and_nonfinite_inputs():
    rng = np.random.default_rng(1)
    n = 2 * F._FMA_BLOCK + 123
    a, c, b = rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n)
    whole = F.fma(a, b, c)
    pieces = np.concatenate([F.fma(a[i:i + 1000], b[i:i + 1000], c[i:i + 1000]) for i in range(0, n, 1000)])
    np.testing.assert_array_equal(whole, pieces)
    assert F.fma(2.0, 3.0, 1.0) == 7.0 and F.fma(2.0, 3.0, 1.0).shape == ()
    assert F.fma(np.ones((2, 3)), np.arange(3.0), np.zeros((2, 1))).shape == (2, 3)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        out = F.fma(np.array([np.inf, 1.0, 1e308]), 2.0, np.array([1.0, np.nan, 0.0]))
    np.testing.assert_array_equal(out, [np.inf, np.nan, np.inf])
