"""masked_cross_entropy: a hand-computed value, finite-difference gradients, masking, label smoothing, validation."""

import math

import numpy as np
import pytest

from lstm_np.gradcheck import numerical_gradient
from lstm_np.losses import masked_cross_entropy


def test_value_matches_hand_computation():
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.0, 2.0, 2.0]])
    targets = np.array([1, 2, 0])
    mask = np.array([True, True, False])
    nll_0 = -(2.0 - math.log(math.exp(1.0) + math.exp(2.0) + math.exp(0.5)))
    nll_1 = -(3.0 - math.log(math.exp(0.0) + math.exp(-1.0) + math.exp(3.0)))
    loss, _ = masked_cross_entropy(logits, targets, mask)
    assert loss == pytest.approx((nll_0 + nll_1) / 2, rel=1e-14)
    loss_all, _ = masked_cross_entropy(logits, targets, np.ones(3, bool))
    assert loss_all == pytest.approx((nll_0 + nll_1 + math.log(3.0)) / 3, rel=1e-14)


def test_grad_matches_finite_differences():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 3, 5))
    targets = rng.integers(0, 5, (2, 3))
    mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
    _, dlogits = masked_cross_entropy(logits, targets, mask)
    numeric = numerical_gradient(lambda: masked_cross_entropy(logits, targets, mask)[0], logits)
    err = np.linalg.norm(dlogits - numeric) / (np.linalg.norm(dlogits) + np.linalg.norm(numeric))
    assert err < 1e-7, f"dlogits: relative error {err:.2e}"


def test_smoothed_value_matches_hand_computation():
    # q = (1 - ε) onehot + ε/V over V = 3 tokens; loss = -(1/N) Σ_rows Σ_k q_k log p_k, written out by hand
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.0, 2.0, 2.0]])
    targets = np.array([1, 2, 0])
    mask = np.array([True, True, False])
    eps = 0.1
    def row(x, t):
        log_z = math.log(sum(math.exp(v) for v in x))
        return -sum(((1 - eps) * (k == t) + eps / 3) * (v - log_z) for k, v in enumerate(x))
    loss, _ = masked_cross_entropy(logits, targets, mask, smoothing=eps)
    assert loss == pytest.approx((row(logits[0], 1) + row(logits[1], 2)) / 2, rel=1e-14)
    # a uniform prediction costs log V, smoothed or not: q sums to 1
    assert masked_cross_entropy(logits[2:], targets[2:], np.ones(1, bool), smoothing=0.3)[0] == pytest.approx(math.log(3.0))


@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_smoothed_grad_matches_finite_differences(eps):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((2, 3, 5))
    targets = rng.integers(0, 5, (2, 3))
    mask = np.array([[1, 1, 0], [1, 0, 1]], bool)
    _, dlogits = masked_cross_entropy(logits, targets, mask, count=6, smoothing=eps)
    numeric = numerical_gradient(lambda: masked_cross_entropy(logits, targets, mask, count=6, smoothing=eps)[0],
                                 logits)
    err = np.linalg.norm(dlogits - numeric) / (np.linalg.norm(dlogits) + np.linalg.norm(numeric))
    assert err < 1e-7, f"dlogits with smoothing {eps}: relative error {err:.2e}"
    assert not dlogits[~mask].any()


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_loss_and_grad_match_the_formulas_written_independently(eps):
    """q = (1 - ε) onehot + ε/V; loss = -(1/N) Σ_mask Σ_k q_k log p_k; dlogits = (p - q) ⊙ mask / N, written here in
    float64 numpy, against float64 and float32 logits (the gradient keeps the logits' dtype)."""
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 7)) * 3
    targets, mask = rng.integers(0, 7, 4), np.array([1, 1, 0, 1], bool)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    q = (1 - eps) * np.eye(7)[targets] + eps / 7
    expected_loss = -(q * logp).sum(axis=1)[mask].sum() / 3
    expected_grad = (np.exp(logp) - q) * mask[:, None] / 3
    for dtype, tol in ((np.float64, 1e-13), (np.float32, 1e-5)):
        loss, dlogits = masked_cross_entropy(logits.astype(dtype), targets, mask, smoothing=eps)
        assert dlogits.dtype == dtype
        assert loss == pytest.approx(expected_loss, rel=tol)
        np.testing.assert_allclose(dlogits, expected_grad, rtol=0, atol=tol)


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, 1.5, float("nan"), True, "0.1"])
def test_bad_smoothing_raises_naming_it(smoothing):
    with pytest.raises(ValueError, match="smoothing"):
        masked_cross_entropy(np.zeros((2, 3)), np.zeros(2, int), np.ones(2, bool), smoothing=smoothing)


def test_masked_positions_neither_count_nor_get_gradient():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, 6)).astype(np.float32)
    targets = np.array([0, 5, 2, 2])
    mask = np.array([1, 0, 1, 0])  # 0/1 integers work like booleans
    loss, dlogits = masked_cross_entropy(logits, targets, mask)
    assert dlogits.dtype == np.float32 and dlogits.shape == logits.shape
    assert not dlogits[[1, 3]].any()
    changed = logits.copy()
    changed[[1, 3]] = 100.0
    assert masked_cross_entropy(changed, targets, mask)[0] == loss
    assert masked_cross_entropy(logits, targets, mask.astype(bool))[0] == loss


def test_huge_logits_stay_finite():
    loss, dlogits = masked_cross_entropy(np.array([[1e4, -1e4, 0.0]]), np.array([1]), np.array([True]))
    assert loss == pytest.approx(2e4) and np.all(np.isfinite(dlogits))


def test_empty_mask_raises():
    with pytest.raises(ValueError, match="mask"):
        masked_cross_entropy(np.zeros((2, 3)), np.zeros(2, int), np.zeros(2, bool))


@pytest.mark.parametrize("targets, error, name", [
    (np.array([0, 3]), ValueError, r"targets must be in \[0, 3\)"),
    (np.array([-1, 0]), ValueError, "targets"),
    (np.array([0.0, 1.0]), TypeError, "targets"),
    (np.array([0, 1, 2]), ValueError, "targets must have shape"),
])
def test_bad_targets_raise_naming_them(targets, error, name):
    with pytest.raises(error, match=name):
        masked_cross_entropy(np.zeros((2, 3)), targets, np.ones(targets.shape, bool))


def test_bad_mask_raises_naming_it():
    with pytest.raises(ValueError, match="mask"):
        masked_cross_entropy(np.zeros((2, 3)), np.zeros(2, int), np.array([1, 2]))
    with pytest.raises(ValueError, match="mask"):
        masked_cross_entropy(np.zeros((2, 3)), np.zeros(2, int), np.ones(3, bool))
