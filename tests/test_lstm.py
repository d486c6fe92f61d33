"""The LSTM core: the documented equations, BPTT against finite differences, masking, stacks, directions."""
import re
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lstm_np as ln
from lstm_np import gradcheck
from lstm_np.gradcheck import CONFIGS, TOLERANCE, check_gradients, check_lstm
from reference import reference_lstm

VARIANTS = ("full", "diagonal", "none")


def randomize(module, rng, scale=0.5):
    """Random weights everywhere, biases and peepholes included, so no term hides behind a zero."""
    for _, value, _ in module.named_parameters():
        value[...] = rng.normal(0.0, scale, size=value.shape)


def assert_within_tolerance(errors):
    """Every relative error of a gradient check at most TOLERANCE; else fail naming the arrays."""
    bad = {k: f"{v:.2e}" for k, v in errors.items() if not v <= TOLERANCE}
    assert not bad, f"relative error above {TOLERANCE} for: {bad}"


def make_problem(seed, T, B, D, H, layers=1, bidirectional=False, peephole="full", masked=False,
                 dtype=np.float64):
    rng = np.random.default_rng(seed)
    lstm = ln.LSTM(D, H, num_layers=layers, peephole=peephole, bidirectional=bidirectional,
                   dtype=dtype, seed=seed)
    randomize(lstm, rng)
    nd = lstm.num_directions
    x = rng.normal(size=(T, B, D))
    h0, c0 = rng.normal(size=(2, layers * nd, B, H))
    lengths = rng.integers(1, T + 1, size=B) if masked else None
    dy = rng.normal(size=(T, B, nd * H))
    dh_n, dc_n = rng.normal(size=(2, layers * nd, B, H))
    return lstm, x, h0, c0, lengths, (dy, dh_n, dc_n)


# ---------------------------------------------------------------------------------------------------
# the forward is the documented equations
@pytest.mark.parametrize("peephole", VARIANTS)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
def test_forward_matches_plain_reference_equations(peephole, masked, layers, bidirectional):
    lstm, x, h0, c0, lengths, _ = make_problem(1, 6, 4, 3, 5, layers, bidirectional, peephole, masked)
    y, (h_n, c_n) = lstm.forward(x, h0, c0, lengths)
    y_ref, h_ref, c_ref = reference_lstm(lstm, x, h0, c0, lengths)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-12, err_msg="y")
    np.testing.assert_allclose(h_n, h_ref, rtol=0, atol=1e-12, err_msg="h_n")
    np.testing.assert_allclose(c_n, c_ref, rtol=0, atol=1e-12, err_msg="c_n")


def test_output_gate_peeks_at_the_new_cell_state():
    """Only W_co nonzero among the peepholes: o_t must use c_t, not c_{t-1} (checked on a single step)."""
    cell = ln.LSTMCell(2, 3, peephole="full", seed=0)
    P = cell.equation_params()
    for name in ("W_ci", "W_cf", "W_cc"):
        P[name][...] = 0
    P["W_co"][...] = np.eye(3) * 2.0
    x, h, c = np.ones((1, 2)), np.zeros((1, 3)), np.full((1, 3), 5.0)
    h_t, c_t = cell.forward(x, h, c)
    a_o = P["W_xo"] @ x[0] + P["W_ho"] @ h[0] + P["W_co"] @ c_t[0] + P["b_o"]
    np.testing.assert_allclose(h_t[0], 1 / (1 + np.exp(-a_o)) * np.tanh(c_t[0]), atol=1e-14)


# ---------------------------------------------------------------------------------------------------
# the backward is the derivative of the forward
@pytest.mark.parametrize("peephole,masked,layers,bidirectional", CONFIGS,
                         ids=[f"{p}-{'masked' if m else 'unmasked'}-{l}L{'-bi' if b else ''}"
                              for p, m, l, b in CONFIGS])
def test_lstm_grads_match_finite_differences(peephole, masked, layers, bidirectional):
    errors = check_lstm(peephole, layers, bidirectional, masked, seed=3)
    assert_within_tolerance(errors)
    expected = {"x", "h0", "c0"} | {f"l0.fwd.{n}" for n in ln.LSTMCell(1, 1, peephole).equation_params()}
    assert expected <= set(errors), "every parameter, x, h0 and c0 must be checked"


@pytest.mark.parametrize("masked,layers,bidirectional", [(False, 1, False), (True, 2, True)])
def test_a_static_input_is_the_same_as_concatenating_it_to_every_step(masked, layers, bidirectional):
    """forward(x, static=s) computes s W_x,s once; it must equal reading [x_t ; s] at every step, forward and
    backward: outputs, states, every weight's gradient, ∂L/∂x and ∂L/∂s (the concatenated input's gradient
    summed over the steps)."""
    T, B, Dx, Ds = 5, 3, 2, 3
    concat, x_all, h0, c0, lengths, upstream = make_problem(4, T, B, Dx + Ds, 4, layers, bidirectional, "full",
                                                            masked)
    static = x_all[0, :, Dx:].copy()                                   # (B, Ds)
    x_all[:, :, Dx:] = static                                          # the same s at every step
    split = ln.LSTM(Dx + Ds, 4, num_layers=layers, peephole="full", bidirectional=bidirectional,
                    dtype=np.float64, seed=4)
    for (name, value, _), (_, other, _) in zip(split.named_parameters(), concat.named_parameters()):
        value[...] = other
    y, (h_n, c_n) = concat.forward(x_all, h0, c0, lengths)
    y_s, (h_s, c_s) = split.forward(x_all[:, :, :Dx], h0, c0, lengths, static=static)
    for name, a, b in (("y", y_s, y), ("h_n", h_s, h_n), ("c_n", c_s, c_n)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg=name)
    dx, (dh0, dc0) = concat.backward(*upstream)
    dx_s, (dh0_s, dc0_s) = split.backward(*upstream)
    assert concat.d_static is None
    np.testing.assert_allclose(dx_s, dx[:, :, :Dx], rtol=0, atol=1e-12, err_msg="dx")
    np.testing.assert_allclose(split.d_static, dx[:, :, Dx:].sum(axis=0), rtol=0, atol=1e-12, err_msg="d_static")
    np.testing.assert_allclose(dh0_s, dh0, rtol=0, atol=1e-12, err_msg="dh0")
    np.testing.assert_allclose(dc0_s, dc0, rtol=0, atol=1e-12, err_msg="dc0")
    for (name, _, grad), (_, _, other) in zip(split.named_parameters(), concat.named_parameters()):
        np.testing.assert_allclose(grad, other, rtol=0, atol=1e-12, err_msg=name)


def test_static_input_gradients_match_finite_differences():
    T, B, Dx, Ds, H = 4, 3, 2, 3, 4
    lstm, x, h0, c0, lengths, (dy, dh_n, dc_n) = make_problem(6, T, B, Dx + Ds, H, masked=True)
    x, static = x[:, :, :Dx].copy(), np.random.default_rng(7).normal(size=(B, Ds))
    W_x = lstm.cell().params["W_x"]

    def loss():
        y, (h_n, c_n) = lstm.forward(x, h0, c0, lengths, static=static)
        return np.sum(dy * y) + np.sum(dh_n * h_n) + np.sum(dc_n * c_n)
    loss()
    lstm.zero_grad()
    dx, _ = lstm.backward(dy, dh_n, dc_n)
    errors = check_gradients(loss, {"x": x, "static": static, "W_x": W_x},
                             {"x": dx, "static": lstm.d_static, "W_x": lstm.cell().grads["W_x"].copy()})
    assert_within_tolerance(errors)


def test_a_static_input_of_the_wrong_shape_is_refused_naming_it():
    lstm = ln.LSTM(5, 4, dtype=np.float64)
    x = np.zeros((3, 2, 2))
    for static, words in ((np.zeros((3, 3)), "static must have shape (2, any)"),
                          (np.zeros((2, 5)), "between 1 and 4 features"),
                          (np.zeros((2, 2)), "x must have shape (any, any, 3)")):
        with pytest.raises(ValueError, match=re.escape(words)):
            lstm.forward(x, static=static)


def break_w_co_gradient(monkeypatch):
    """Make ∂L/∂W_co wrong and nothing else: accumulated with c_{t-1} where the output gate peeks at c_t (the
    slip the equations invite). The inputs' gradients and every other weight's stay right."""
    accumulate = ln.LSTMCell.accumulate_grads

    def wrong(self, x, h_prev, c_prev, c, da):
        accumulate(self, x, h_prev, c_prev, c_prev, da)

    monkeypatch.setattr(ln.LSTMCell, "accumulate_grads", wrong)


def test_gradcheck_reports_exactly_the_parameter_whose_gradient_is_wrong(monkeypatch):
    """Negative control: the checker that passes every correct backward above must catch a wrong one, and
    name it."""
    break_w_co_gradient(monkeypatch)
    errors = check_lstm("full", num_layers=1, bidirectional=False, masked=True, seed=3)
    flagged = {name for name, err in errors.items() if not err <= TOLERANCE}
    assert flagged == {"l0.fwd.W_co"}, {name: f"{err:.1e}" for name, err in errors.items()}
    assert errors["l0.fwd.W_co"] > 1e-3, "a wrong gradient is far off, not borderline"


def test_gradcheck_command_fails_on_a_wrong_gradient(monkeypatch, capsys):
    break_w_co_gradient(monkeypatch)
    monkeypatch.setattr(gradcheck, "CONFIGS", [("full", False, 1, False)])
    assert gradcheck.main() == 1
    out = capsys.readouterr().out
    w_co = next(line for line in out.splitlines() if line.startswith("W_co"))
    assert float(w_co.split()[1]) > 1e-3 and out.rstrip().endswith("(FAIL)"), out


@pytest.mark.parametrize("peephole", VARIANTS)
def test_single_cell_step_grads_match_finite_differences(peephole):
    rng = np.random.default_rng(7)
    cell = ln.LSTMCell(3, 4, peephole=peephole, seed=7)
    randomize(cell, rng)
    x = rng.normal(size=(2, 3))
    h, c = rng.normal(size=(2, 2, 4))
    dh, dc = rng.normal(size=(2, 2, 4))

    def loss():
        h_t, c_t = cell.forward(x, h, c)
        return float(np.sum(dh * h_t) + np.sum(dc * c_t))

    cell.zero_grad()
    cell.forward(x, h, c)
    dx, dh_prev, dc_prev = cell.backward(dh, dc)
    arrays = dict(cell.equation_params(), x=x, h_prev=h, c_prev=c)
    analytic = dict({k: v.copy() for k, v in cell.equation_grads().items()}, x=dx, h_prev=dh_prev, c_prev=dc_prev)
    assert_within_tolerance(check_gradients(loss, arrays, analytic))


def test_dropout_between_layers_grads_match_finite_differences():
    lstm, x, h0, c0, lengths, (dy, dh_n, dc_n) = make_problem(5, 4, 3, 3, 4, 2, True, "full", True)
    lstm.dropout = 0.3
    state = lstm.rng.bit_generator.state

    def forward():
        lstm.rng.bit_generator.state = state          # the same dropout mask at every evaluation
        return lstm.forward(x, h0, c0, lengths)

    def loss():
        y, (h_n, c_n) = forward()
        return float(np.sum(dy * y) + np.sum(dh_n * h_n) + np.sum(dc_n * c_n))

    lstm.zero_grad()
    forward()
    dx, _ = lstm.backward(dy, dh_n, dc_n)
    arrays = {"x": x, **{n: v for n, v, _ in lstm.named_parameters()}}
    analytic = {"x": dx, **{n: g.copy() for n, _, g in lstm.named_parameters()}}
    assert_within_tolerance(check_gradients(loss, arrays, analytic))


def watch_layer_inputs(lstm, monkeypatch):
    """A list that every forward fills with (input, output) of each layer, in layer order (one direction)."""
    seen, run_layer = [], lstm._forward_one

    def watched(cell, x, h0, c0, mask, static=None):
        y, states, cache = run_layer(cell, x, h0, c0, mask, static)
        seen.append((x.copy(), y.copy()))
        return y, states, cache

    monkeypatch.setattr(lstm, "_forward_one", watched)
    return seen


def test_dropout_forward_drops_at_its_rate_scales_by_the_inverse_keep_rate_and_spares_layer_0(monkeypatch):
    """Inverted dropout on the input of layers 1 and 2 (never on x): over 10,000 units per layer the dropped
    fraction is p within 4 standard deviations (0.02), every kept unit is the layer below's output times
    exactly 1/(1-p), each layer draws its own mask, and eval mode is the model without dropout."""
    p, T, B, H = 0.3, 10, 20, 50
    x = np.random.default_rng(0).normal(size=(T, B, H))
    lstm = ln.LSTM(H, H, num_layers=3, dropout=p, dtype=np.float64, seed=4)
    seen = watch_layer_inputs(lstm, monkeypatch)
    lstm.forward(x)
    assert len(seen) == 3
    np.testing.assert_array_equal(seen[0][0], x, err_msg="layer 0 reads x untouched")
    masks = []
    for layer in (1, 2):
        x_in, below = seen[layer][0], seen[layer - 1][1]
        assert np.all(below != 0), "the check tells dropped units by their zeros"
        kept = x_in != 0
        masks.append(kept)
        assert abs((1 - kept.mean()) - p) < 0.02, f"layer {layer}: dropped {1 - kept.mean():.4f}, rate {p}"
        np.testing.assert_allclose(x_in[kept], below[kept] * (1 / (1 - p)), rtol=1e-15, atol=0,
                                   err_msg=f"layer {layer}: kept units are not scaled by 1/(1-p)")
    assert not np.array_equal(masks[0], masks[1]), "layers 1 and 2 drew the same mask"

    seen.clear()
    y_eval, _ = lstm.eval().forward(x)
    for layer in (1, 2):
        np.testing.assert_array_equal(seen[layer][0], seen[layer - 1][1], err_msg=f"eval mode: layer {layer}")
    y_plain, _ = ln.LSTM(H, H, num_layers=3, dropout=0.0, dtype=np.float64, seed=4).forward(x)
    np.testing.assert_array_equal(y_eval, y_plain, err_msg="eval mode differs from the model without dropout")


def test_gradients_accumulate_until_zero_grad():
    lstm, x, h0, c0, lengths, (dy, dh_n, dc_n) = make_problem(2, 4, 2, 3, 3)
    lstm.forward(x, h0, c0)
    lstm.backward(dy, dh_n, dc_n)
    once = [g.copy() for _, _, g in lstm.named_parameters()]
    lstm.forward(x, h0, c0)
    lstm.backward(dy, dh_n, dc_n)
    for (name, _, g), g1 in zip(lstm.named_parameters(), once):
        np.testing.assert_allclose(g, 2 * g1, rtol=1e-12, err_msg=name)
    lstm.zero_grad()
    assert all(not g.any() for _, _, g in lstm.named_parameters())


def test_dropout_is_seeded_and_off_in_eval_mode():
    x = np.random.default_rng(0).normal(size=(5, 3, 4))
    a = ln.LSTM(4, 6, num_layers=2, dropout=0.5, seed=11)
    b = ln.LSTM(4, 6, num_layers=2, dropout=0.5, seed=11)
    ya, _ = a.forward(x)
    yb, _ = b.forward(x)
    np.testing.assert_array_equal(ya, yb)
    assert not np.allclose(ya, a.forward(x)[0]), "a new mask is drawn at every training forward"
    a.eval()
    y_eval1, y_eval2 = a.forward(x)[0], a.forward(x)[0]
    np.testing.assert_array_equal(y_eval1, y_eval2)
    a.dropout = 0.0
    a.train()
    np.testing.assert_array_equal(a.forward(x)[0], y_eval1)


# ---------------------------------------------------------------------------------------------------
# properties over random small shapes
shapes = st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 4), st.integers(1, 5),
                   st.sampled_from(VARIANTS), st.integers(0, 2**16))


@settings(max_examples=25, deadline=None)
@given(shapes, st.booleans())
def test_padded_steps_carry_state_and_output_zeros(shape, bidirectional):
    T, B, D, H, peephole, seed = shape
    lstm, x, h0, c0, _, _ = make_problem(seed, T, B, D, H, 1, bidirectional, peephole)
    lengths = np.random.default_rng(seed).integers(1, T + 1, size=B)
    y, (h_n, c_n) = lstm.forward(x, h0, c0, lengths)
    for b in range(B):
        n = lengths[b]
        assert not y[n:, b].any(), "outputs at padded steps must be zero"
        y_b, (h_b, c_b) = lstm.forward(x[:n, b:b + 1], h0[:, b:b + 1], c0[:, b:b + 1])
        np.testing.assert_allclose(y[:n, b:b + 1], y_b, atol=1e-12)
        np.testing.assert_allclose(h_n[:, b:b + 1], h_b, atol=1e-12)   # state after the last real step
        np.testing.assert_allclose(c_n[:, b:b + 1], c_b, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(shapes, st.booleans())
def test_each_batch_row_equals_running_it_alone_forward_and_backward(shape, bidirectional):
    T, B, D, H, peephole, seed = shape
    lstm, x, h0, c0, lengths, (dy, dh_n, dc_n) = make_problem(seed, T, B, D, H, 2, bidirectional, peephole, True)
    y, (h_n, c_n) = lstm.forward(x, h0, c0, lengths)
    lstm.zero_grad()
    dx, (dh0, dc0) = lstm.backward(dy, dh_n, dc_n)
    batch_grads = [g.copy() for _, _, g in lstm.named_parameters()]
    summed = [np.zeros_like(g) for g in batch_grads]
    for b in range(B):
        n = lengths[b]
        s = slice(b, b + 1)
        y_b, (h_b, c_b) = lstm.forward(x[:n, s], h0[:, s], c0[:, s])
        np.testing.assert_allclose(y[:n, s], y_b, atol=1e-12)
        np.testing.assert_allclose(h_n[:, s], h_b, atol=1e-12)
        lstm.zero_grad()
        dx_b, (dh0_b, dc0_b) = lstm.backward(dy[:n, s], dh_n[:, s], dc_n[:, s])
        np.testing.assert_allclose(dx[:n, s], dx_b, atol=1e-11)
        assert not dx[n:, s].any(), "no gradient reaches padded inputs"
        np.testing.assert_allclose(dh0[:, s], dh0_b, atol=1e-11)
        np.testing.assert_allclose(dc0[:, s], dc0_b, atol=1e-11)
        for acc, (_, _, g) in zip(summed, lstm.named_parameters()):
            acc += g
    for (name, _, _), g, acc in zip(lstm.named_parameters(), batch_grads, summed):
        np.testing.assert_allclose(g, acc, atol=1e-10, err_msg=name)


@settings(max_examples=20, deadline=None)
@given(shapes)
def test_cell_step_by_step_equals_layer_forward_and_backward(shape):
    T, B, D, H, peephole, seed = shape
    lstm, x, h0, c0, _, (dy, dh_n, dc_n) = make_problem(seed, T, B, D, H, 1, False, peephole)
    y, (h_n, c_n) = lstm.forward(x, h0, c0)
    lstm.zero_grad()
    dx, (dh0, dc0) = lstm.backward(dy, dh_n, dc_n)
    layer_grads = {k: v.copy() for k, v in lstm.cell().equation_grads().items()}

    cell = lstm.cell()
    cell.zero_grad()
    h, c, caches = h0[0], c0[0], []
    for t in range(T):
        h, c = cell.forward(x[t], h, c)
        np.testing.assert_allclose(h, y[t], atol=1e-12)
        caches.append(cell._step_cache)
    dh, dc = dh_n[0], dc_n[0]
    for t in reversed(range(T)):
        cell._step_cache = caches[t]
        dx_t, dh, dc = cell.backward(dh + dy[t], dc)
        np.testing.assert_allclose(dx_t, dx[t], atol=1e-11)
    np.testing.assert_allclose(dh, dh0[0], atol=1e-11)
    np.testing.assert_allclose(dc, dc0[0], atol=1e-11)
    for name, g in cell.equation_grads().items():
        np.testing.assert_allclose(g, layer_grads[name], atol=1e-10, err_msg=name)


@settings(max_examples=15, deadline=None)
@given(shapes, st.booleans())
def test_float32_agrees_with_float64(shape, masked):
    T, B, D, H, peephole, seed = shape
    l64, x, h0, c0, lengths, (dy, dh_n, dc_n) = make_problem(seed, T, B, D, H, 2, True, peephole, masked)
    l32 = ln.LSTM(D, H, num_layers=2, peephole=peephole, bidirectional=True, dtype=np.float32)
    for (_, v32, _), (_, v64, _) in zip(l32.named_parameters(), l64.named_parameters()):
        v32[...] = v64
    y64, (h64, _) = l64.forward(x, h0, c0, lengths)
    y32, (h32, _) = l32.forward(x, h0, c0, lengths)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, atol=1e-4)
    np.testing.assert_allclose(h32, h64, atol=1e-4)
    dx64, _ = l64.backward(dy, dh_n, dc_n)
    dx32, _ = l32.backward(dy, dh_n, dc_n)
    np.testing.assert_allclose(dx32, dx64, atol=1e-4 * max(1.0, np.abs(dx64).max()))
    for (name, _, g32), (_, _, g64) in zip(l32.named_parameters(), l64.named_parameters()):
        np.testing.assert_allclose(g32, g64, atol=1e-4 * max(1.0, np.abs(g64).max()), err_msg=name)


@settings(max_examples=15, deadline=None)
@given(shapes, st.sampled_from(["full", "diagonal"]))
def test_zeroed_peepholes_equal_the_plain_lstm(shape, peephole):
    T, B, D, H, _, seed = shape
    plain, x, h0, c0, lengths, (dy, dh_n, dc_n) = make_problem(seed, T, B, D, H, 1, True, "none", True)
    peep = ln.LSTM(D, H, peephole=peephole, bidirectional=True)
    for d in range(2):
        P, Q = peep.cell(0, d).equation_params(), plain.cell(0, d).equation_params()
        for name, view in P.items():
            view[...] = Q[name] if name in Q else 0.0
    y1, (h1, c1) = plain.forward(x, h0, c0, lengths)
    y2, (h2, c2) = peep.forward(x, h0, c0, lengths)
    np.testing.assert_allclose(y2, y1, atol=1e-13)
    np.testing.assert_allclose(c2, c1, atol=1e-13)
    dx1, _ = plain.backward(dy, dh_n, dc_n)
    dx2, _ = peep.backward(dy, dh_n, dc_n)
    np.testing.assert_allclose(dx2, dx1, atol=1e-12)
    for d in range(2):
        G1, G2 = plain.cell(0, d).equation_grads(), peep.cell(0, d).equation_grads()
        for name in G1:
            np.testing.assert_allclose(G2[name], G1[name], atol=1e-12, err_msg=name)


# ---------------------------------------------------------------------------------------------------
# stability
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("peephole", VARIANTS)
def test_huge_inputs_give_finite_outputs_without_warnings(dtype, peephole):
    lstm = ln.LSTM(3, 4, num_layers=2, peephole=peephole, bidirectional=True, dtype=dtype)
    x = np.random.default_rng(0).choice([-1e4, 1e4], size=(6, 2, 3))
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
        warnings.simplefilter("error")
        y, (h_n, c_n) = lstm.forward(x)
        dx, _ = lstm.backward(np.ones_like(y))
    for name, arr in [("y", y), ("h_n", h_n), ("c_n", c_n), ("dx", dx)]:
        assert np.isfinite(arr).all(), name
        assert arr.dtype == dtype, name


# ---------------------------------------------------------------------------------------------------
# views and names of the stable interface
def test_equation_params_are_writable_views_with_documented_shapes():
    D, H = 3, 4
    shapes = {"full": (H, H), "diagonal": (H,)}
    for peephole in VARIANTS:
        cell = ln.LSTMCell(D, H, peephole=peephole)
        P = cell.equation_params()
        for g in "ifco":
            assert P[f"W_x{g}"].shape == (H, D) and P[f"W_h{g}"].shape == (H, H) and P[f"b_{g}"].shape == (H,)
        peeps = {k for k in P if k.startswith("W_c")}
        expected = {"full": {"W_ci", "W_cf", "W_cc", "W_co"}, "diagonal": {"W_ci", "W_cf", "W_co"}, "none": set()}
        assert peeps == expected[peephole]
        for k in peeps:
            assert P[k].shape == shapes[peephole]
        assert set(cell.equation_grads()) == set(P)
        before = [v.copy() for _, v, _ in cell.named_parameters()]
        P["W_hf"][1, 2] = 42.0
        changed = [not np.array_equal(b, v) for b, (_, v, _) in zip(before, cell.named_parameters())]
        assert sum(changed) == 1 and 42.0 in cell.params["W_h"]


def test_initialization_forget_bias_one_and_uniform_weights():
    cell = ln.LSTMCell(5, 8, seed=3)
    P = cell.equation_params()
    np.testing.assert_array_equal(P["b_f"], 1.0)
    for g in "ico":
        np.testing.assert_array_equal(P[f"b_{g}"], 0.0)
    assert np.abs(P["W_hi"]).max() <= 1 / np.sqrt(8)


def test_named_parameters_and_cell_accessor():
    lstm = ln.LSTM(3, 4, num_layers=2, bidirectional=True, peephole="diagonal")
    names = [n for n, _, _ in lstm.named_parameters()]
    assert len(names) == len(set(names)) == 4 * 5
    assert "l1.bwd.p_co" in names
    assert lstm.cell(1, 1).input_size == 8
    with pytest.raises(ValueError, match="layer"):
        lstm.cell(2, 0)


# ---------------------------------------------------------------------------------------------------
# bad input names the argument
def test_bad_input_raises_naming_the_argument():
    lstm = ln.LSTM(3, 4, num_layers=2, bidirectional=True)
    x = np.zeros((5, 2, 3))
    cases = [
        (ValueError, r"x must be a 3-D array", lambda: lstm.forward(np.zeros((5, 3)))),
        (ValueError, r"x must have shape \(any, any, 3\)", lambda: lstm.forward(np.zeros((5, 2, 4)))),
        (ValueError, "x contains NaN or Inf", lambda: lstm.forward(np.full((5, 2, 3), np.nan))),
        (ValueError, "x contains NaN or Inf", lambda: lstm.forward(np.full((5, 2, 3), np.inf))),
        (TypeError, "x must be a real numeric array", lambda: lstm.forward(np.array([[["a"] * 3] * 2] * 5))),
        (ValueError, r"lengths must lie in \[1, 5\]", lambda: lstm.forward(x, lengths=np.array([0, 5]))),
        (ValueError, r"lengths must lie in \[1, 5\]", lambda: lstm.forward(x, lengths=np.array([6, 5]))),
        (ValueError, r"lengths must have shape \(2,\)", lambda: lstm.forward(x, lengths=np.array([5, 5, 5]))),
        (TypeError, "lengths must be an integer array", lambda: lstm.forward(x, lengths=np.array([5.0, 4.0]))),
        (ValueError, r"h0 must have shape \(4, 2, 4\)", lambda: lstm.forward(x, h0=np.zeros((2, 2, 4)))),
        (ValueError, r"c0 must have shape \(4, 2, 4\)", lambda: lstm.forward(x, c0=np.zeros((4, 2, 5)))),
        (ValueError, "peephole must be one of", lambda: ln.LSTM(3, 4, peephole="fancy")),
        (ValueError, "peephole must be one of", lambda: ln.LSTMCell(3, 4, peephole="Full")),
        (ValueError, "hidden_size must be an int >= 1", lambda: ln.LSTM(3, 0)),
        (ValueError, "hidden_size must be an int >= 1", lambda: ln.LSTMCell(3, -2)),
        (ValueError, "input_size must be an int >= 1", lambda: ln.LSTM(0, 4)),
        (ValueError, "num_layers must be an int >= 1", lambda: ln.LSTM(3, 4, num_layers=0)),
        (ValueError, r"dropout must be a finite number in \[0, 1\)", lambda: ln.LSTM(3, 4, dropout=1.0)),
        (TypeError, "dtype must be np.float32 or np.float64", lambda: ln.LSTM(3, 4, dtype=np.int32)),
        (ValueError, r"backward\(\) needs a completed forward\(\)",
         lambda: ln.LSTM(3, 4).backward(np.zeros((5, 2, 4)))),
        (ValueError, r"backward\(\) called before forward\(\)",
         lambda: ln.LSTMCell(3, 4).backward(np.zeros((2, 4)), np.zeros((2, 4)))),
    ]
    for exc, name, call in cases:
        with pytest.raises(exc, match=name):
            call()
    lstm.forward(x)
    with pytest.raises(ValueError, match=r"dy must have shape \(5, 2, 8\)"):
        lstm.backward(np.zeros((5, 2, 4)))
    with pytest.raises(ValueError, match=r"dh_n must have shape \(4, 2, 4\)"):
        lstm.backward(np.zeros((5, 2, 8)), dh_n=np.zeros((4, 2, 3)))


def test_backward_after_a_failed_forward_is_an_error_not_the_previous_gradients():
    lstm = ln.LSTM(3, 4, dtype=np.float64)
    x = np.random.default_rng(0).normal(size=(5, 2, 3))
    lstm.forward(x)
    with pytest.raises(ValueError, match="lengths"):
        lstm.forward(x, lengths=np.array([9, 9]))       # validation fails: this forward did not happen
    with pytest.raises(ValueError, match="completed forward"):
        lstm.backward(np.ones((5, 2, 4)))               # must not differentiate the previous call instead


def test_a_second_forward_does_not_hold_two_caches_at_once():
    """The previous call's cache is freed before the next forward allocates its own: the second forward's
    peak above what the first one left allocated stays below one cache (7 values per step, row and unit;
    holding both would need more than 7 on top). Measured with tracemalloc, which numpy reports its
    buffers to: sizes, not times."""
    T, B, H = 20, 8, 32
    lstm = ln.LSTM(H, H, peephole="none", dtype=np.float64)
    x = np.random.default_rng(0).normal(size=(T, B, H))
    unit = T * B * H * 8
    lstm.forward(x)
    was = tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        lstm.forward(x)                                 # settle: the cache held between calls
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        y, _ = lstm.forward(x)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was:
            tracemalloc.stop()
    assert peak < 7 * unit, f"second forward peaked {peak / unit:.2f} values per unit above the held cache"


# ---------------------------------------------------------------------------------------------------
# step_values: the gates and states of the last forward, read back from its cache
@pytest.mark.parametrize("peephole", VARIANTS)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
def test_step_values_are_the_reference_equations_gates_and_states(peephole, masked, layers, bidirectional):
    """Every layer and direction, every real step: i, f, o, c~, c, h equal the plain reference's values of
    the step that read the same position (the reverse direction's step t reads lengths[b] - 1 - t)."""
    lstm, x, h0, c0, lengths, _ = make_problem(2, 6, 4, 3, 5, layers, bidirectional, peephole, masked)
    T, B = x.shape[:2]
    lstm.forward(x, h0, c0, lengths)
    record = {}
    reference_lstm(lstm, x, h0, c0, lengths, record=record)
    n = np.full(B, T) if lengths is None else lengths
    for (layer, d), ref in record.items():
        got = lstm.step_values(layer, d)
        assert list(got) == ["i", "f", "o", "c_tilde", "c", "h"]
        for name, values in got.items():
            assert values.shape == (T, B, 5), (name, values.shape)
            for b in range(B):
                steps = np.arange(n[b])
                positions = steps if d == 0 else n[b] - 1 - steps
                np.testing.assert_allclose(values[steps, b], ref[name][positions, b], rtol=0, atol=1e-12,
                                           err_msg=f"layer {layer} direction {d} {name} row {b}")


def test_step_values_are_read_only_views_that_outlive_the_next_forward():
    lstm, x, h0, c0, _, (dy, dh_n, dc_n) = make_problem(3, 5, 2, 3, 4)
    y, _ = lstm.forward(x, h0, c0)
    first = lstm.step_values()
    np.testing.assert_array_equal(first["h"], y)        # unidirectional, no padding: h_t is the output
    assert np.shares_memory(first["i"], lstm.step_values()["i"]), "step_values copied instead of viewing"
    for name, values in first.items():
        with pytest.raises(ValueError, match="read-only"):
            values[0, 0, 0] = 0.0
    kept = {name: v.copy() for name, v in first.items()}
    lstm.backward(dy, dh_n, dc_n)                       # the backward reads the same arrays, writes none
    lstm.forward(-x)
    for name, values in first.items():
        np.testing.assert_array_equal(values, kept[name], err_msg=name)
    assert not np.allclose(lstm.step_values()["h"], kept["h"])


def test_step_values_errors_name_what_is_missing_or_wrong():
    lstm = ln.LSTM(3, 4, num_layers=2, dtype=np.float64)
    with pytest.raises(ValueError, match="completed forward"):
        lstm.step_values()
    x = np.random.default_rng(0).normal(size=(5, 2, 3))
    lstm.forward(x)
    with pytest.raises(ValueError, match="layer"):
        lstm.step_values(layer=2)
    with pytest.raises(ValueError, match="direction"):
        lstm.step_values(direction=1)
    with pytest.raises(ValueError, match="lengths"):
        lstm.forward(x, lengths=np.array([9, 9]))
    with pytest.raises(ValueError, match="completed forward"):
        lstm.step_values()                              # not the values of the call before the failed one
