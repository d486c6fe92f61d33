"""Embedding and Linear: hand-written gradients against central finite differences (float64), padding,
accumulation, and argument validation."""

import numpy as np
import pytest

from lstm_np.gradcheck import numerical_gradient, relative_error
from lstm_np.layers import Embedding, Linear


def test_linear_grads_match_finite_differences():
    rng = np.random.default_rng(0)
    layer = Linear(4, 5, dtype=np.float64, seed=1)
    assert np.all(layer.b != 0), "the check needs a nonzero bias"
    x = rng.standard_normal((2, 3, 4))
    upstream = rng.standard_normal((2, 3, 5))  # random ∂L/∂y, not a plain sum
    loss = lambda: float(np.sum(upstream * layer.forward(x)))

    layer.forward(x)
    dx = layer.backward(upstream)
    errors = {name: relative_error(grad, numerical_gradient(loss, value))
              for name, value, grad in layer.named_parameters()}
    errors["x"] = relative_error(dx, numerical_gradient(loss, x))
    bad = {name: err for name, err in errors.items() if not err < 1e-7}
    assert not bad, f"relative errors above 1e-7: {bad}"


def test_linear_accumulates_and_zero_grad_clears():
    rng = np.random.default_rng(0)
    layer = Linear(3, 2, dtype=np.float64)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer.forward(x)
    layer.backward(dy)
    once = [grad.copy() for _, _, grad in layer.named_parameters()]
    layer.forward(x)
    layer.backward(dy)
    for (name, _, grad), first in zip(layer.named_parameters(), once):
        np.testing.assert_allclose(grad, 2 * first, err_msg=name)
    layer.zero_grad()
    assert all(not grad.any() for _, _, grad in layer.named_parameters())


def test_linear_is_x_times_w_plus_b_and_keeps_dtype():
    layer = Linear(3, 2, seed=4)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = layer.forward(x)
    assert y.dtype == np.float32 and layer.W.shape == (3, 2)
    np.testing.assert_allclose(y, x @ layer.W + layer.b, rtol=1e-6)
    assert np.all(np.abs(layer.W) <= 1 / np.sqrt(3))


def test_linear_without_bias_has_only_a_weight():
    layer = Linear(3, 2, bias=False)
    assert [name for name, _, _ in layer.named_parameters()] == ["weight"]
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(layer.forward(x), x @ layer.W)


def test_linear_rejects_wrong_last_dimension_naming_x():
    layer = Linear(4, 2)
    with pytest.raises(ValueError, match=r"x must have last dimension in_features=4"):
        layer.forward(np.zeros((3, 5)))


def test_embedding_grad_matches_finite_differences():
    rng = np.random.default_rng(0)
    emb = Embedding(7, 3, dtype=np.float64, seed=2)
    ids = np.array([[1, 4, 1, 6], [0, 4, 4, 2]])  # repeated ids must add up
    upstream = rng.standard_normal((2, 4, 3))
    loss = lambda: float(np.sum(upstream * emb.forward(ids)))

    emb.forward(ids)
    assert emb.backward(upstream) is None
    (name, value, grad), = emb.named_parameters()
    err = relative_error(grad, numerical_gradient(loss, value))
    assert err < 1e-7, f"{name}: relative error {err:.2e}"


def test_embedding_padding_row_is_zero_and_gets_no_grad():
    rng = np.random.default_rng(0)
    emb = Embedding(5, 3, dtype=np.float64, padding_idx=0)
    assert not emb.W[0].any(), "padding row must start at zero"
    ids = np.array([0, 2, 0, 3])
    dout = rng.standard_normal((4, 3))
    emb.forward(ids)
    emb.backward(dout)
    assert not emb.dW[0].any(), "padding row received a gradient"
    np.testing.assert_array_equal(emb.dW[2], dout[1])
    np.testing.assert_array_equal(emb.dW[3], dout[3])


def test_embedding_is_seeded_and_dtype_independent():
    a = Embedding(10, 4, dtype=np.float64, seed=3)
    b = Embedding(10, 4, dtype=np.float64, seed=3)
    c = Embedding(10, 4, dtype=np.float32, seed=3)
    np.testing.assert_array_equal(a.W, b.W)
    assert c.W.dtype == np.float32 and c.forward(np.array([1, 2])).dtype == np.float32
    np.testing.assert_array_equal(c.W, a.W.astype(np.float32))


@pytest.mark.parametrize("ids, error, pattern", [
    (np.array([1.0, 2.0]), TypeError, "ids must be an integer array"),
    (np.array([0, -1]), ValueError, r"ids must be in \[0, 10\)"),
    (np.array([[3, 10]]), ValueError, r"ids must be in \[0, 10\)"),
])
def test_embedding_rejects_bad_ids_naming_them(ids, error, pattern):
    with pytest.raises(error, match=pattern):
        Embedding(10, 4).forward(ids)


@pytest.mark.parametrize("build, name", [
    (lambda: Linear(0, 3), "in_features"),
    (lambda: Linear(3, -2), "out_features"),
    (lambda: Linear(2.5, 3), "in_features"),
    (lambda: Embedding(0, 3), "num_embeddings"),
    (lambda: Embedding(5, True), "embedding_dim"),
    (lambda: Embedding(5, 3, padding_idx=5), "padding_idx"),
])
def test_bad_sizes_raise_naming_the_argument(build, name):
    with pytest.raises(ValueError, match=name):
        build()


@pytest.mark.parametrize("make", [lambda dt: Embedding(5, 3, dtype=dt), lambda dt: Linear(3, 2, dtype=dt)])
@pytest.mark.parametrize("dtype", [np.int32, np.float16, "not a dtype"])
def test_layers_accept_only_float32_or_float64_like_the_lstm(make, dtype):
    with pytest.raises(TypeError, match="dtype must be np.float32 or np.float64"):
        make(dtype)
