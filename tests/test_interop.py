"""The PyTorch bridge: to_torch / from_torch against torch.nn.LSTM itself (forward, backward, packed sequences,
round trips, parameter names) and every refusal. Tests that need torch skip without it; the refusals that
happen before torch is imported run either way."""
import subprocess
import sys

import numpy as np
import pytest

import lstm_np as ln
from lstm_np.interop import from_torch, to_torch

DTYPES = (np.float32, np.float64)
SHAPES = [(1, False), (1, True), (2, False), (2, True)]            # (num_layers, bidirectional)
SHAPE_IDS = [f"{l}L{'-bi' if b else ''}" for l, b in SHAPES]
T, B, D, H = 7, 3, 4, 5
# Largest |ours - torch's| allowed, relative to max(1, max |torch's value|). float64: the bound the bridge
# promises (same function, summed in a different order; measured up to 9e-16). float32: ~80 ulp of 1.0
# (eps = 1.2e-7; measured up to 7e-7, in the weight gradients, which sum T·B terms), with room for torch's
# other CPU kernels.
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="torch is an optional extra (pip install \"lstm_np[torch]\"): "
                                               "the bridge can only be checked against torch.nn.LSTM itself")


def plain_lstm(layers, bidirectional, dtype, seed=0, **kwargs):
    """An lstm_np LSTM with peephole="none" and random weights everywhere (biases included, scale 0.5), so no
    gate and no term hides behind a zero or the default initialization."""
    lstm = ln.LSTM(D, H, num_layers=layers, peephole="none", bidirectional=bidirectional, dtype=dtype,
                   seed=seed, **kwargs)
    rng = np.random.default_rng(seed)
    for _, value, _ in lstm.named_parameters():
        value[...] = rng.normal(0.0, 0.5, size=value.shape)
    return lstm


def problem(lstm, seed=1):
    """Random x, h0, c0 and upstream gradients dy, dh_n, dc_n for `lstm`, in its dtype."""
    rng = np.random.default_rng(seed)
    S = lstm.num_layers * lstm.num_directions
    arrays = (rng.normal(size=(T, B, D)), rng.normal(size=(S, B, H)), rng.normal(size=(S, B, H)),
              rng.normal(size=(T, B, lstm.num_directions * H)), rng.normal(size=(S, B, H)),
              rng.normal(size=(S, B, H)))
    return [a.astype(lstm.dtype) for a in arrays]


def torch_run(torch, module, x, h0, c0, dy, dh_n, dc_n):
    """torch's forward and backward with the upstream gradients: y, h_n, c_n, dx, dh0, dc0 as numpy arrays."""
    x, h0, c0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    y, (h_n, c_n) = module(x, (h0, c0))
    torch.autograd.backward([y, h_n, c_n], [torch.tensor(a) for a in (dy, dh_n, dc_n)])
    return [t.detach().numpy() for t in (y, h_n, c_n, x.grad, h0.grad, c0.grad)]


def assert_close(what, ours, theirs, dtype):
    """max |ours - theirs| within TOLERANCE[dtype] of max(1, max |theirs|); else fail naming the array."""
    theirs = np.asarray(theirs)
    assert ours.dtype == theirs.dtype == dtype, f"{what}: dtypes {ours.dtype}, {theirs.dtype}, expected {dtype}"
    diff, scale = np.abs(ours - theirs).max(), max(1.0, np.abs(theirs).max())
    assert diff <= TOLERANCE[dtype] * scale, \
        f"{what}: max |Δ| {diff:.2e} above {TOLERANCE[dtype]:.0e} x {scale:.2f} ({np.dtype(dtype).name})"


def torch_dtype(torch, dtype):
    return getattr(torch, np.dtype(dtype).name)


def name_of(layer, direction):
    return f"_l{layer}" + ("_reverse" if direction else "")


# ---------------------------------------------------------------------------------------------------
# to_torch: the module computes the same function, forward and backward
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layers,bidirectional", SHAPES, ids=SHAPE_IDS)
def test_to_torch_gives_same_outputs_input_and_weight_gradients(torch, layers, bidirectional, dtype):
    lstm = plain_lstm(layers, bidirectional, dtype)
    module = to_torch(lstm)
    x, h0, c0, dy, dh_n, dc_n = problem(lstm)
    y, (h_n, c_n) = lstm.forward(x, h0, c0)
    lstm.zero_grad()
    dx, (dh0, dc0) = lstm.backward(dy, dh_n, dc_n)
    theirs = torch_run(torch, module, x, h0, c0, dy, dh_n, dc_n)
    for what, ours, t in zip(("y", "h_n", "c_n", "dx", "dh0", "dc0"), (y, h_n, c_n, dx, dh0, dc0), theirs):
        assert_close(what, ours, t, dtype)
    grad = {n: p.grad.numpy() for n, p in module.named_parameters()}
    for layer in range(layers):
        for d in range(lstm.num_directions):
            g, sfx = lstm.cell(layer, d).grads, name_of(layer, d)
            assert_close("∂L/∂weight_ih" + sfx, g["W_x"].T, grad["weight_ih" + sfx], dtype)
            assert_close("∂L/∂weight_hh" + sfx, g["W_h"].T, grad["weight_hh" + sfx], dtype)
            assert_close("∂L/∂bias_ih" + sfx, g["b"], grad["bias_ih" + sfx], dtype)   # b_ih and b_hh enter as
            assert_close("∂L/∂bias_hh" + sfx, g["b"], grad["bias_hh" + sfx], dtype)   # a sum: both get ∂L/∂b


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_to_torch_lengths_match_torchs_packed_sequences(torch, dtype):
    """lstm_np's `lengths` and torch's packed sequences are the same semantics: y, h_n, c_n and dx agree."""
    lstm = plain_lstm(2, True, dtype)
    module = to_torch(lstm)
    x, h0, c0, dy, _, _ = problem(lstm)
    lengths = np.array([T, 2, 5])
    y, (h_n, c_n) = lstm.forward(x, h0, c0, lengths=lengths)
    dx, _ = lstm.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
    out, (ht, ct) = module(packed, (torch.tensor(h0), torch.tensor(c0)))
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    yt.backward(torch.tensor(dy))
    for what, ours, t in [("y", y, yt), ("h_n", h_n, ht), ("c_n", c_n, ct), ("dx", dx, xt.grad)]:
        assert_close(what, ours, t.detach().numpy(), dtype)


def test_to_torch_maps_each_named_gate_to_torchs_rows(torch):
    """torch documents weight_ih as [W_ii | W_if | W_ig | W_io] stacked by rows (likewise weight_hh and the
    biases): each block must be lstm_np's named view W_xi, W_xf, W_xc, W_xo (W_h*, b_* likewise)."""
    lstm = plain_lstm(2, True, np.float64)
    module = to_torch(lstm)
    for layer in range(2):
        for d in range(2):
            P, sfx = lstm.cell(layer, d).equation_params(), name_of(layer, d)
            w_ih, w_hh = (getattr(module, n + sfx).detach().numpy() for n in ("weight_ih", "weight_hh"))
            bias = (getattr(module, "bias_ih" + sfx) + getattr(module, "bias_hh" + sfx)).detach().numpy()
            for k, gate in enumerate("ifco"):
                rows = slice(k * H, (k + 1) * H)
                assert np.array_equal(w_ih[rows], P["W_x" + gate]), f"weight_ih{sfx} rows of gate {gate}"
                assert np.array_equal(w_hh[rows], P["W_h" + gate]), f"weight_hh{sfx} rows of gate {gate}"
                assert np.array_equal(bias[rows], P["b_" + gate]), f"bias{sfx} rows of gate {gate}"


def test_to_torch_uses_torchs_parameter_names_and_configuration(torch):
    lstm = plain_lstm(2, True, np.float32, dropout=0.25)
    module = to_torch(lstm)
    expected = torch.nn.LSTM(D, H, num_layers=2, bidirectional=True)
    assert list(module.state_dict()) == list(expected.state_dict())
    assert "weight_hh_l1_reverse" in module.state_dict()
    assert (module.input_size, module.hidden_size, module.num_layers, module.bidirectional, module.dropout,
            module.batch_first, module.proj_size, module.bias) == (D, H, 2, True, 0.25, False, 0, True)
    assert all(p.dtype == torch.float32 for p in module.parameters())
    assert all(not b.any() for n, b in module.named_parameters() if n.startswith("bias_hh")), \
        "to_torch puts all of b in bias_ih and zeros in bias_hh"


def test_to_torch_copies_weights_and_training_flag(torch):
    lstm = plain_lstm(2, False, np.float64, dropout=0.5)
    assert to_torch(lstm).training
    module = to_torch(lstm.eval())
    assert not module.training
    x, h0, c0, *_ = problem(lstm)
    y, _ = lstm.forward(x, h0, c0)
    with torch.no_grad():
        y_torch, _ = module(torch.tensor(x), (torch.tensor(h0), torch.tensor(c0)))
    assert_close("y (eval mode: dropout 0.5 inactive)", y, y_torch.numpy(), np.float64)
    before = module.weight_ih_l0.detach().clone()
    lstm.cell(0, 0).params["W_x"] += 1.0
    assert torch.equal(module.weight_ih_l0, before), "the module must own a copy of the weights"


# ---------------------------------------------------------------------------------------------------
# from_torch
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layers,bidirectional", SHAPES, ids=SHAPE_IDS)
def test_from_torch_of_random_module_gives_same_outputs(torch, layers, bidirectional, dtype):
    """torch's own random initialization (both biases nonzero, so their sum is what lstm_np must use)."""
    torch.manual_seed(layers + 2 * bidirectional)
    module = torch.nn.LSTM(D, H, num_layers=layers, bidirectional=bidirectional, dtype=torch_dtype(torch, dtype))
    lstm = from_torch(module)
    assert (lstm.peephole, lstm.dtype, lstm.num_layers, lstm.bidirectional) == ("none", dtype, layers, bidirectional)
    x, h0, c0, dy, dh_n, dc_n = problem(lstm)
    y, (h_n, c_n) = lstm.forward(x, h0, c0)
    dx, _ = lstm.backward(dy, dh_n, dc_n)
    for what, ours, t in zip(("y", "h_n", "c_n", "dx"), (y, h_n, c_n, dx),
                             torch_run(torch, module, x, h0, c0, dy, dh_n, dc_n)):
        assert_close(what, ours, t, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip_through_torch_changes_nothing(torch, dtype):
    lstm = plain_lstm(2, True, dtype, dropout=0.3)
    back = from_torch(to_torch(lstm.eval()))
    assert (back.input_size, back.hidden_size, back.num_layers, back.bidirectional, back.dropout, back.peephole,
            back.dtype, back.training) == (D, H, 2, True, 0.3, "none", dtype, False)
    for (name, ours, _), (name_back, theirs, _) in zip(lstm.named_parameters(), back.named_parameters()):
        assert name == name_back and theirs.dtype == dtype and np.array_equal(ours, theirs), name


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip_from_torch_keeps_weights_and_bias_sums(torch, dtype):
    """module -> lstm_np -> module: the same weights, and bias_ih holding bias_ih + bias_hh (rounded once)."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(D, H, num_layers=2, bidirectional=True, dtype=torch_dtype(torch, dtype))
    again = to_torch(from_torch(module)).state_dict()
    for name, value in module.state_dict().items():
        if name.startswith("weight"):
            assert torch.equal(again[name], value), name
        elif name.startswith("bias_ih"):
            total = (value.double() + module.state_dict()[name.replace("_ih", "_hh")].double()).to(value.dtype)
            assert torch.equal(again[name], total), name


def test_from_torch_dtype_is_the_modules_unless_given(torch):
    torch.manual_seed(0)
    module = torch.nn.LSTM(D, H, dtype=torch.float64)
    assert from_torch(module).dtype == np.float64
    lstm = from_torch(module, dtype=np.float32)
    assert lstm.dtype == np.float32
    assert np.array_equal(lstm.cell().params["W_x"], module.weight_ih_l0.detach().float().numpy().T)
    half = torch.nn.LSTM(D, H).half()
    with pytest.raises(TypeError, match=r"dtype.*float16.*dtype=np.float32"):
        from_torch(half)
    assert np.array_equal(from_torch(half, dtype=np.float64).cell().params["W_h"],
                          half.weight_hh_l0.detach().double().numpy().T)
    with pytest.raises(TypeError, match="dtype"):
        from_torch(module, dtype=np.float16)


def test_from_torch_copies_dropout_and_training_flag(torch):
    module = torch.nn.LSTM(D, H, num_layers=3, dropout=0.4)
    lstm = from_torch(module)
    assert lstm.dropout == pytest.approx(0.4) and lstm.training
    assert not from_torch(module.eval()).training
    before = lstm.cell().params["W_x"].copy()
    with torch.no_grad():
        module.weight_ih_l0 += 1.0
    assert np.array_equal(lstm.cell().params["W_x"], before), "the LSTM must own a copy of the weights"


@pytest.mark.parametrize("kwargs,match", [(dict(proj_size=2), "proj_size=2"), (dict(bias=False), "bias=False"),
                                          (dict(batch_first=True), "batch_first=True.*batch_first = False")])
def test_from_torch_refuses_what_lstm_np_lacks(torch, kwargs, match):
    with pytest.raises(ValueError, match=match):
        from_torch(torch.nn.LSTM(D, H, **kwargs))


def test_batch_first_module_converts_as_its_message_says(torch):
    """The refusal's advice: batch_first = False for the conversion, then feed x.transpose(1, 0, 2)."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(D, H, batch_first=True, dtype=torch.float64)
    module.batch_first = False
    lstm = from_torch(module)
    module.batch_first = True
    x_bf = np.random.default_rng(0).normal(size=(B, T, D))                        # (B, T, D)
    with torch.no_grad():
        y_bf = module(torch.tensor(x_bf))[0].numpy()                              # (B, T, H)
    y, _ = lstm.forward(x_bf.transpose(1, 0, 2))                                  # (T, B, H)
    assert_close("y", y.transpose(1, 0, 2), y_bf, np.float64)


def test_from_torch_refuses_non_finite_weights_naming_them(torch):
    module = torch.nn.LSTM(D, H, num_layers=2)
    with torch.no_grad():
        module.weight_hh_l1[0, 0] = float("nan")
    with pytest.raises(ValueError, match="module.weight_hh_l1 contains NaN"):
        from_torch(module)


def test_from_torch_type_error_names_the_argument(torch):
    for wrong in (torch.nn.GRU(D, H), torch.nn.LSTMCell(D, H), plain_lstm(1, False, np.float64)):
        with pytest.raises(TypeError, match=f"module must be a torch.nn.LSTM, got {type(wrong).__name__}"):
            from_torch(wrong)


# ---------------------------------------------------------------------------------------------------
# refusals before torch is needed, and torch as an optional extra (these run without torch too)
@pytest.mark.parametrize("peephole,why", [("full", "peephole matrices"), ("diagonal", "peephole vectors")])
def test_to_torch_refuses_peephole_variants_saying_why(peephole, why):
    lstm = ln.LSTM(D, H, peephole=peephole)
    with pytest.raises(ValueError, match=f"peephole='{peephole}'.*{why}.*torch.nn.LSTM has no peephole"):
        to_torch(lstm)


def test_to_torch_type_error_names_the_argument():
    for wrong in (ln.LSTMCell(D, H, peephole="none"), "lstm", None):
        with pytest.raises(TypeError, match=f"lstm must be an lstm_np.LSTM, got {type(wrong).__name__}"):
            to_torch(wrong)


def test_without_torch_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)     # `import torch` now raises ImportError
    for call in (lambda: to_torch(ln.LSTM(D, H, peephole="none")), lambda: from_torch(object())):
        with pytest.raises(ImportError, match=r'pip install "lstm_np\[torch\]"'):
            call()


def test_importing_lstm_np_and_its_bridge_does_not_import_torch():
    code = "import sys, lstm_np, lstm_np.interop; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
