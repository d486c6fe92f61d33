"""Optimizers against plain re-implementations of their formulas (bit for bit), torch (if installed),
state-dict round trips, clipping, the learning-rate schedule, and hyperparameter validation."""

import io
import math
from fractions import Fraction

import numpy as np
import pytest

from lstm_np import optim
from lstm_np.optim import SGD, Adam, AdamW, clip_grad_norm
from lstm_np.schedule import WarmupDecay

SHAPES = {"W": (3, 4), "b": (5,)}


def exact_fma(a, b, c):
    """a·b + c rounded once, via exact rational arithmetic (independent of lstm_np.functional.fma)."""
    a, b, c = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(c, np.float64))
    out = [float(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))) for x, y, z in zip(a.flat, b.flat, c.flat)]
    return np.array(out).reshape(a.shape)


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    return [(name, rng.standard_normal(shape), np.zeros(shape)) for name, shape in SHAPES.items()]


def grad_sequence(steps, seed=1):
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(shape) for name, shape in SHAPES.items()} for _ in range(steps)]


def run(opt, params, grads):
    """Feed the gradients step by step; return copies of the parameter values after each step."""
    history = []
    for step_grads in grads:
        for name, _, grad in params:
            grad[...] = step_grads[name]
        opt.step()
        history.append({name: value.copy() for name, value, _ in params})
    return history


def reference_adam(p, grads, lr, betas, eps, weight_decay, decoupled):
    """torch.optim.Adam/AdamW (single-tensor path) written out plainly, one parameter, float64."""
    beta1, beta2 = betas
    m, v, history = np.zeros_like(p), np.zeros_like(p), []
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * weight_decay)                  # param.mul_(1 - lr*wd)
        elif weight_decay != 0:
            g = exact_fma(p, weight_decay, g)                # grad.add(param, alpha=wd): an FMA in torch's kernel
        w = 1 - beta1                                        # exp_avg.lerp_(grad, w): an FMA in torch's kernel
        m = exact_fma(g - m, w, m) if abs(w) < 0.5 else exact_fma(g - m, w - 1, g)
        v = v * beta2
        v = exact_fma((1 - beta2) * g, g, v)                 # addcmul_: self + (value*t1)*t2, contracted by GCC
        step_size = lr / (1 - beta1 ** t)
        denom = np.sqrt(v) / (1 - beta2 ** t) ** 0.5 + eps
        p = p + (-step_size) * m / denom                     # addcdiv_: self + (value*t1)/t2
        history.append(p)
    return history


def reference_sgd(p, grads, lr, momentum, weight_decay, nesterov):
    """torch.optim.SGD (dampening=0, single-tensor path) written out plainly, one parameter, float64."""
    buf, history = None, []
    for g in grads:
        if weight_decay != 0:
            g = exact_fma(p, weight_decay, g)
        if momentum != 0:
            buf = g.copy() if buf is None else buf * momentum + g
            g = exact_fma(buf, momentum, g) if nesterov else buf
        p = exact_fma(g, -lr, p)
        history.append(p)
    return history


def assert_bitwise_equal(actual, expected, label):
    assert actual.dtype == expected.dtype
    as_int = f"i{actual.itemsize}"
    ulps = np.abs(actual.view(as_int).astype(np.int64) - expected.view(as_int)).max()
    assert np.array_equal(actual, expected), f"{label}: differs by up to {ulps} ulp"


@pytest.mark.parametrize("cls, kwargs", [
    (Adam, dict(lr=1e-2)),
    (Adam, dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    (Adam, dict(lr=1e-2, betas=(0.3, 0.9))),     # lerp weight 1 - β1 >= 0.5: torch's other lerp branch
    (AdamW, dict(lr=1e-2)),
    (AdamW, dict(lr=1e-2, weight_decay=0.5)),
])
def test_adam_matches_plain_reference_bit_for_bit(cls, kwargs):
    params, grads = make_params(), grad_sequence(6)
    initial = {name: value.copy() for name, value, _ in params}
    history = run(cls(params, **kwargs), params, grads)
    full = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01 if cls is AdamW else 0.0) | kwargs
    for name in SHAPES:
        expected = reference_adam(initial[name], [g[name] for g in grads], decoupled=cls is AdamW, **full)
        for t, (got, want) in enumerate(zip(history, expected), start=1):
            assert_bitwise_equal(got[name], want, f"{cls.__name__} {name} step {t}")


def test_adam_is_the_textbook_update_up_to_rounding():
    lr, (beta1, beta2), eps, wd = 1e-2, (0.9, 0.999), 1e-8, 0.05
    params, grads = make_params(), grad_sequence(5)
    p = params[0][1].copy()
    history = run(Adam(params, lr=lr, eps=eps, weight_decay=wd), params, grads)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, step_grads in enumerate(grads, start=1):
        g = step_grads["W"] + wd * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        p = p - lr * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps)
        np.testing.assert_allclose(history[t - 1]["W"], p, rtol=1e-12, atol=0, err_msg=f"step {t}")


@pytest.mark.parametrize("kwargs", [
    dict(lr=0.1),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
])
def test_sgd_matches_plain_reference_bit_for_bit(kwargs):
    params, grads = make_params(), grad_sequence(5)
    initial = {name: value.copy() for name, value, _ in params}
    history = run(SGD(params, **kwargs), params, grads)
    full = dict(momentum=0.0, weight_decay=0.0, nesterov=False) | kwargs
    for name in SHAPES:
        expected = reference_sgd(initial[name], [g[name] for g in grads], **full)
        for t, (got, want) in enumerate(zip(history, expected), start=1):
            assert_bitwise_equal(got[name], want, f"SGD {name} step {t}")


TORCH_CASES = [
    ("Adam", dict(lr=1e-2, weight_decay=0.1)),
    ("Adam", dict(lr=1e-2, betas=(0.3, 0.9))),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
]


def run_against_torch(which, kwargs, dtype, steps=8, size=3000):
    """Step ours and torch.optim (single-tensor path) side by side; return both final values."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    value, grad = rng.standard_normal(size).astype(dtype), np.zeros(size, dtype)
    tensor = torch.tensor(value.copy(), requires_grad=True)
    ours = {"Adam": Adam, "AdamW": AdamW, "SGD": SGD}[which]([("p", value, grad)], exact=True, **kwargs)
    theirs = getattr(torch.optim, which)([tensor], foreach=False, **kwargs)
    for _ in range(steps):
        grad[...] = rng.standard_normal(size)
        tensor.grad = torch.tensor(grad.copy())
        ours.step()
        theirs.step()
    return value, tensor.detach().numpy()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("which, kwargs", TORCH_CASES)
def test_matches_torch_bit_for_bit_given_torchs_sqrt(which, kwargs, dtype, monkeypatch):
    """Every operation but sqrt matches torch's to the last bit. torch's CPU sqrt (MKL vdSqrt on x86) is not
    correctly rounded, so it is swapped in for this comparison."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(optim, "_sqrt", lambda x, out: np.copyto(out, torch.from_numpy(np.ascontiguousarray(x)).sqrt().numpy()))
    ours, theirs = run_against_torch(which, kwargs, dtype)
    ulps = np.abs(ours.view(f"i{ours.itemsize}").astype(np.int64) - theirs.view(f"i{ours.itemsize}")).max()
    assert np.array_equal(ours, theirs), f"{which} {dtype.__name__}: differs from torch by up to {ulps} ulp"


@pytest.mark.parametrize("which, kwargs", TORCH_CASES)
def test_matches_torch_to_rounding_with_numpys_sqrt(which, kwargs):
    ours, theirs = run_against_torch(which, kwargs, np.float64)
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("make", [
    lambda p: Adam(p, lr=1e-2, weight_decay=0.1),
    lambda p: AdamW(p, lr=1e-2),
    lambda p: SGD(p, lr=0.1, momentum=0.9),
])
def test_state_dict_round_trip_gives_identical_subsequent_steps(make):
    grads = grad_sequence(6)
    params = make_params()
    opt = make(params)
    run(opt, params, grads[:3])
    buffer = io.BytesIO()
    np.savez(buffer, **opt.state_dict())
    saved_values = {name: value.copy() for name, value, _ in params}
    continued = run(opt, params, grads[3:])

    fresh = make_params(seed=99)
    for name, value, _ in fresh:
        value[...] = saved_values[name]
    restored = make(fresh)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as state:
        restored.load_state_dict(state)
    resumed = run(restored, fresh, grads[3:])
    for t, (a, b) in enumerate(zip(continued, resumed)):
        for name in SHAPES:
            assert np.array_equal(a[name], b[name]), f"{name} differs {t + 1} steps after resuming"


def test_load_state_dict_names_the_mismatch():
    opt = Adam(make_params())
    state = opt.state_dict()
    with pytest.raises(ValueError, match="m/W"):
        opt.load_state_dict({k: v for k, v in state.items() if k != "m/W"})
    with pytest.raises(ValueError, match="m/extra"):
        opt.load_state_dict(state | {"m/extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"'v/b'.*shape"):
        opt.load_state_dict(state | {"v/b": np.zeros(4)})
    with pytest.raises(ValueError, match="step"):
        opt.load_state_dict(state | {"step": np.array(-1)})


def test_step_and_zero_grad_work_in_place():
    params = make_params()
    values = [value for _, value, _ in params]
    for _, _, grad in params:
        grad[...] = 1.0
    opt = Adam(params, lr=0.1)
    opt.step()
    opt.zero_grad()
    for (name, value, grad), original in zip(params, values):
        assert value is original, f"{name}: the optimizer must update the module's own array"
        assert not grad.any(), f"{name}: zero_grad left a nonzero gradient"


def test_duplicate_parameter_names_raise():
    params = make_params()
    with pytest.raises(ValueError, match="'W'"):
        Adam(params + [params[0]])


@pytest.mark.parametrize("build, name", [
    (lambda p: Adam(p, lr=-1e-3), "lr"),
    (lambda p: Adam(p, lr=float("nan")), "lr"),
    (lambda p: Adam(p, betas=(1.0, 0.999)), "betas"),
    (lambda p: Adam(p, betas=(0.9, -0.1)), "betas"),
    (lambda p: Adam(p, betas=(0.9,)), "betas"),
    (lambda p: Adam(p, eps=-1e-8), "eps"),
    (lambda p: Adam(p, weight_decay=-0.1), "weight_decay"),
    (lambda p: AdamW(p, weight_decay=-0.1), "weight_decay"),
    (lambda p: SGD(p, lr=-0.1), "lr"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.5), "momentum"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-1.0), "weight_decay"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "nesterov"),
    (lambda p: Adam([]), "params"),
    (lambda p: clip_grad_norm(p, 0.0), "max_norm"),
    (lambda p: clip_grad_norm(p, -1.0), "max_norm"),
    (lambda p: WarmupDecay(-1e-3, 10, 100), "base_lr"),
    (lambda p: WarmupDecay(1e-3, -1, 100), "warmup_steps"),
    (lambda p: WarmupDecay(1e-3, 10, 5), "total_steps"),
    (lambda p: WarmupDecay(1e-3, 10, 100, final_lr_fraction=1.5), "final_lr_fraction"),
    (lambda p: WarmupDecay(1e-3, 10, 100, kind="step"), "kind"),
    (lambda p: WarmupDecay(1e-3, 10, 100)(-1), "step"),
])
def test_invalid_hyperparameters_raise_naming_them(build, name):
    with pytest.raises(ValueError, match=name):
        build(make_params())


def test_lr_is_settable_and_validated():
    opt = Adam(make_params())
    opt.lr = 5e-4
    assert opt.lr == 5e-4
    with pytest.raises(ValueError, match="lr"):
        opt.lr = float("inf")


def test_clip_grad_norm_returns_pre_clip_norm_and_scales_all_grads_together():
    params = [("a", np.zeros(2), np.array([3.0, 4.0])), ("b", np.zeros(1), np.array([12.0]))]
    norm = clip_grad_norm(params, max_norm=1.0)
    assert norm == 13.0
    scale = 1.0 / (13.0 + 1e-6)
    np.testing.assert_array_equal(params[0][2], np.array([3.0, 4.0]) * scale)
    np.testing.assert_array_equal(params[1][2], np.array([12.0]) * scale)


def test_clip_grad_norm_leaves_small_or_nonfinite_grads_alone():
    small = [("a", np.zeros(2, np.float32), np.array([0.3, 0.4], np.float32))]
    assert clip_grad_norm(small, max_norm=1.0) == pytest.approx(0.5, rel=1e-7)
    np.testing.assert_array_equal(small[0][2], np.array([0.3, 0.4], np.float32))
    assert small[0][2].dtype == np.float32
    bad = [("a", np.zeros(2), np.array([np.inf, 1.0]))]
    assert clip_grad_norm(bad, max_norm=1.0) == np.inf
    np.testing.assert_array_equal(bad[0][2], np.array([np.inf, 1.0]))


def test_clip_grad_norm_with_a_given_norm_scales_by_it():
    """Data-parallel workers add up their shares' Σ g² and clip their share by the norm of the whole."""
    share = [("a", np.zeros(2), np.array([3.0, 4.0]))]
    assert clip_grad_norm(share, max_norm=1.0, norm=13.0) == 13.0
    np.testing.assert_array_equal(share[0][2], np.array([3.0, 4.0]) * (1.0 / (13.0 + 1e-6)))
    assert clip_grad_norm(share, max_norm=20.0, norm=13.0) == 13.0      # under max_norm: left alone
    np.testing.assert_array_equal(share[0][2], np.array([3.0, 4.0]) * (1.0 / (13.0 + 1e-6)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("make", [lambda p: Adam(p, lr=0.1, weight_decay=0.01, lr_scale={"b": 0.5}),
                                  lambda p: SGD(p, lr=0.1, momentum=0.9)])
def test_a_step_of_pieces_updates_those_elements_as_the_whole_step_and_nothing_else(make, dtype):
    """step(pieces): a worker's share of the parameters (flat element ranges) gets the whole update's bits."""
    whole, part = ([(n, v.astype(dtype), g.astype(dtype)) for n, v, g in make_params()] for _ in range(2))
    opt_whole, opt_part = make(whole), make(part)
    pieces = {"W": (5, 12), "b": (0, 2)}                   # W's elements 5..11 (of 12), b's 0..1 (of 5)
    for step_grads in grad_sequence(3):
        for params in (whole, part):
            for name, _, grad in params:
                grad[...] = step_grads[name]
        start = {name: value.copy() for name, value, _ in part}
        opt_whole.step()
        opt_part.step(pieces)
        for (name, w, _), (_, p, _) in zip(whole, part):
            a, b = pieces[name]
            np.testing.assert_array_equal(p.reshape(-1)[a:b], w.reshape(-1)[a:b])
            untouched = np.ones(p.size, bool)
            untouched[a:b] = False
            np.testing.assert_array_equal(p.reshape(-1)[untouched], start[name].reshape(-1)[untouched])
            for key in opt_part.state_dict():
                if key.endswith("/" + name):
                    np.testing.assert_array_equal(opt_part.state_dict()[key].reshape(-1)[a:b],
                                                  opt_whole.state_dict()[key].reshape(-1)[a:b])
        for name, value, _ in whole:                       # the pieces' rest as the whole step left it
            a, b = pieces[name]
            rest = np.ones(value.size, bool)
            rest[a:b] = False
            next(v for n, v, _ in part if n == name).reshape(-1)[rest] = value.reshape(-1)[rest]


def test_a_piece_of_a_parameter_that_is_not_contiguous_is_refused():
    value = np.zeros((4, 6))[:, :3]                        # a view: reshape(-1) would copy, and the update be lost
    opt = Adam([("W", value, np.ones_like(value))], lr=0.1)
    with pytest.raises(ValueError, match="'W'.*C-contiguous"):
        opt.step({"W": (0, 5)})


def test_clip_grad_norm_sums_float32_grads_in_float64():
    g = np.full(10**6, 1e-3, np.float32)  # a float32 running sum of 1e-6 a million times drifts visibly
    assert clip_grad_norm([("g", np.zeros_like(g), g)], 10.0) == pytest.approx(
        math.sqrt(1e6 * float(np.float32(1e-3)) ** 2), rel=1e-12)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_schedule_values_at_warmup_start_end_and_total(kind):
    lr = WarmupDecay(1e-3, warmup_steps=10, total_steps=110, final_lr_fraction=0.1, kind=kind)
    assert lr(0) == pytest.approx(1e-4)             # first warm-up step: base / warmup_steps
    assert lr(9) == pytest.approx(1e-3)             # last warm-up step reaches base_lr
    assert lr(10) == pytest.approx(1e-3)            # decay starts from base_lr
    assert lr(60) == pytest.approx(5.5e-4)          # half way: min + (base - min) / 2, for both kinds
    assert lr(110) == pytest.approx(1e-4)           # total_steps: final fraction
    assert lr(10_000) == pytest.approx(1e-4)        # constant afterwards
    values = [lr(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:])), "decay must be monotone"
    warm = [lr(s) for s in range(10)]
    assert all(a < b for a, b in zip(warm, warm[1:])), "warm-up must increase"


def test_schedule_without_warmup_starts_at_base_lr():
    lr = WarmupDecay(2e-3, warmup_steps=0, total_steps=100)
    assert lr(0) == 2e-3
    assert lr(100) == pytest.approx(2e-4)


def test_adam_minimises_a_quadratic():
    target = np.random.default_rng(0).standard_normal(10)
    p, g = np.zeros(10), np.zeros(10)
    opt = Adam([("p", p, g)], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        g += 2 * (p - target)
        opt.step()
    np.testing.assert_allclose(p, target, atol=1e-5)


@pytest.mark.parametrize("cls", [Adam, AdamW, SGD])
def test_float32_default_path_is_the_same_update_to_float32_rounding(cls):
    """float32 parameters default to plain (separately rounded) arithmetic: the same update as the exact
    path up to float32 rounding, and exact=True still gives the exact path's bits."""
    kwargs = dict(lr=1e-2, weight_decay=0.1) | (dict(momentum=0.9) if cls is SGD else {})
    grads = grad_sequence(6)
    histories = {}
    for exact in (None, True):
        params = [(n, v.astype(np.float32), g.astype(np.float32)) for n, v, g in make_params()]
        histories[exact] = run(cls(params, exact=exact, **kwargs), params, grads)
    for t, (fast, exact) in enumerate(zip(histories[None], histories[True]), start=1):
        for name in SHAPES:
            assert fast[name].dtype == np.float32
            np.testing.assert_allclose(fast[name], exact[name], rtol=2e-6, atol=2e-7, err_msg=f"{name} step {t}")
    params = [(n, v.astype(np.float32), g.astype(np.float32)) for n, v, g in make_params()]
    with pytest.raises(ValueError, match="exact"):
        cls(params, exact="yes", **kwargs)


@pytest.mark.parametrize("cls, kwargs", [(Adam, {}), (Adam, dict(weight_decay=0.1)), (AdamW, {}),
                                         (Adam, dict(betas=(0.3, 0.9)))])
def test_float32_in_place_blocked_adam_is_the_plain_formula_bit_for_bit(cls, kwargs):
    """The float32 path updates in place, block by block; it must give exactly the bits of the update
    written as one plain numpy expression per line, for a parameter spanning several blocks, a small one,
    and a non-contiguous view (updated through, unblocked)."""
    rng = np.random.default_rng(0)
    big = rng.standard_normal(3 * optim._BLOCK + 17).astype(np.float32)
    small = rng.standard_normal((3, 5)).astype(np.float32)
    base = rng.standard_normal((6, 8)).astype(np.float32)
    view = base[:, ::2]                                  # non-contiguous: every other column
    values = [big, small, view]
    expected = [v.copy() for v in values]
    params = [(f"p{i}", v, np.zeros_like(v)) for i, v in enumerate(values)]
    opt = cls(params, lr=1e-2, **kwargs)
    beta1, beta2 = opt.betas
    lr, wd, eps = opt.lr, opt.weight_decay, opt.eps
    m = [np.zeros_like(v) for v in values]
    s = [np.zeros_like(v) for v in values]
    for t in range(1, 5):
        grads = [rng.standard_normal(v.shape).astype(np.float32) for v in values]
        for (_, _, g), new in zip(params, grads):
            g[...] = new
        opt.step()
        for k, (p, g) in enumerate(zip(expected, grads)):
            if wd and cls is AdamW:
                p *= np.float32(1 - lr * wd)
            elif wd:
                g = p * np.float32(wd) + g
            w = np.float32(1 - beta1)
            m[k] = (g - m[k]) * w + m[k] if abs(w) < 0.5 else (g - m[k]) * (w - 1) + g
            s[k] = (g * np.float32(1 - beta2)) * g + s[k] * np.float32(beta2)
            denom = np.sqrt(s[k]) / np.float32((1 - beta2 ** t) ** 0.5) + np.float32(eps)
            p += (m[k] * np.float32(-lr / (1 - beta1 ** t))) / denom
        for k, ((_, got, g), want) in enumerate(zip(params, expected)):
            assert np.array_equal(got, want), f"parameter {k} step {t}"
            assert np.array_equal(g, grads[k]), "the gradient must be left untouched"
    assert np.shares_memory(params[2][1], base) and np.array_equal(base[:, ::2], params[2][1])


# ----------------------------------------------------------------------------- per-parameter lr_scale

@pytest.mark.parametrize("cls, kwargs", [
    (Adam, dict(weight_decay=0.1)),
    (AdamW, dict(weight_decay=0.5)),
    (SGD, dict(momentum=0.9)),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_scaled_parameter_steps_exactly_as_with_lr_times_its_scale(cls, kwargs, dtype):
    """lr_scale={"b": s}: "b" takes the very steps (same bits) of an optimizer run at lr·s, under a changing lr,
    and "W" those of one at lr: a group that moves by exactly its scale."""
    scale, lrs = 0.1, [0.02, 0.05, 0.03, 0.01]
    grads = grad_sequence(len(lrs))

    def trajectory(lr_scale, lr_factor):
        params = [(n, v.astype(dtype), g.astype(dtype)) for n, v, g in make_params()]
        opt = cls(params, lr=lrs[0], lr_scale=lr_scale, **kwargs)
        out = []
        for lr, step_grads in zip(lrs, grads):
            opt.lr = lr * lr_factor
            out += run(opt, params, [step_grads])
        return out

    scaled, plain, slow = trajectory({"b": scale}, 1.0), trajectory(None, 1.0), trajectory(None, scale)
    for t in range(len(lrs)):
        assert_bitwise_equal(scaled[t]["W"], plain[t]["W"], f"{cls.__name__} unscaled W, step {t + 1}")
        assert_bitwise_equal(scaled[t]["b"], slow[t]["b"], f"{cls.__name__} scaled b, step {t + 1}")
    assert not np.array_equal(scaled[-1]["b"], plain[-1]["b"]), "the scale changed nothing"


def test_sgd_scaled_update_is_lr_times_scale_times_grad():
    params = make_params()
    before = {n: v.copy() for n, v, _ in params}
    opt = SGD(params, lr=0.5, lr_scale={"W": 0.25, "b": 0.0})
    run(opt, params, grad_sequence(1))
    g = grad_sequence(1)[0]
    assert_bitwise_equal(params[0][1], exact_fma(g["W"], -0.5 * 0.25, before["W"]), "W: p - (lr·scale) g")
    assert np.array_equal(params[1][1], before["b"]), "scale 0 must freeze the parameter"


def test_lr_scale_patterns_are_fnmatch_on_full_names():
    params = [(name, np.ones(2), np.ones(2)) for name in ("enc.l0.W_c", "enc.l0.W_co", "dec.l0.W_c", "dec.l0.W_h")]
    opt = Adam(params, lr=1.0, lr_scale={"*.W_c": 0.1, "*.W_co": 0.5})
    assert {n: opt.lr_of(n) for n, _, _ in params} == {"enc.l0.W_c": 0.1, "enc.l0.W_co": 0.5, "dec.l0.W_c": 0.1,
                                                       "dec.l0.W_h": 1.0}


@pytest.mark.parametrize("lr_scale, error, words", [
    ({"*.W_q": 0.1}, ValueError, ["'*.W_q'", "matches no parameter"]),
    ({"*": 0.1, "W": 0.5}, ValueError, ["'W'", "two multipliers"]),
    ({"W": -1.0}, ValueError, ["lr_scale['W']", ">= 0"]),
    ({"W": float("nan")}, ValueError, ["lr_scale['W']", "finite"]),
    ({1: 0.1}, TypeError, ["lr_scale keys", "str"]),
    ([("W", 0.1)], TypeError, ["lr_scale must be a dict"]),
])
def test_bad_lr_scale_is_refused_naming_the_entry(lr_scale, error, words):
    with pytest.raises(error) as info:
        Adam(make_params(), lr=1e-3, lr_scale=lr_scale)
    for word in words:
        assert word in str(info.value), f"{word!r} not in {str(info.value)!r}"


def test_scaled_groups_match_torch_param_groups_bit_for_bit(monkeypatch):
    """Against torch.optim.Adam with two param groups, the second at lr·scale (float64, torch's sqrt)."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(optim, "_sqrt", lambda x, out: np.copyto(out, torch.from_numpy(np.ascontiguousarray(x)).sqrt().numpy()))
    rng = np.random.default_rng(0)
    values = {n: rng.standard_normal(500) for n in ("a", "b")}
    grads = {n: np.zeros(500) for n in values}
    tensors = {n: torch.tensor(v.copy(), requires_grad=True) for n, v in values.items()}
    ours = Adam([(n, values[n], grads[n]) for n in values], lr=1e-2, weight_decay=0.1, exact=True, lr_scale={"b": 0.1})
    theirs = torch.optim.Adam([{"params": [tensors["a"]]}, {"params": [tensors["b"]], "lr": 1e-2 * 0.1}],
                              lr=1e-2, weight_decay=0.1, foreach=False)
    for _ in range(6):
        for n in values:
            grads[n][...] = rng.standard_normal(500)
            tensors[n].grad = torch.tensor(grads[n].copy())
        ours.step()
        theirs.step()
    for n in values:
        assert_bitwise_equal(values[n], tensors[n].detach().numpy(), f"parameter {n}")


# ---------------------------------------------------------------------------------------------------------------
# the weight average (Polyak averaging, bias-corrected)

def test_weight_average_is_the_decay_weighted_mean_of_the_weights_after_each_update():
    """d = 0.5 and weights 1, 2, 4 after three updates: â = (1, 5/3, 3), by hand:
    (1·1)/1, (0.5·1 + 1·2)/1.5, (0.25·1 + 0.5·2 + 1·4)/1.75."""
    value = np.zeros(1)
    avg = optim.WeightAverage([("w", value, np.zeros(1))], decay=0.5)
    seen = []
    for w in (1.0, 2.0, 4.0):
        value[...] = w
        avg.step()
        seen.append(float(avg.averaged()["w"][0]))
    assert seen == pytest.approx([1.0, 5 / 3, 3.0], abs=1e-15)
    assert value[0] == 4.0                                   # the parameters themselves are not touched


def test_weight_average_of_pieces_is_the_whole_average_on_those_elements_and_round_trips():
    """Two ranks, each averaging its own share (pieces), hold the whole average's bits on their elements."""
    params, other = make_params(), make_params()
    whole = optim.WeightAverage(params, 0.9)
    ranks = [optim.WeightAverage(other, 0.9), optim.WeightAverage(other, 0.9)]
    pieces = [{"W": (0, 5)}, {"W": (5, 12), "b": (0, 5)}]   # the two ranks' shares: every element once
    rng = np.random.default_rng(3)
    for _ in range(4):
        for (_, v, _), (_, u, _) in zip(params, other):
            v[...] = u[...] = rng.standard_normal(v.shape)
        whole.step()
        for rank, piece in zip(ranks, pieces):
            rank.step(piece)
    for rank, piece in zip(ranks, pieces):
        for name, (start, stop) in piece.items():
            np.testing.assert_array_equal(rank.averaged()[name].reshape(-1)[start:stop],
                                          whole.averaged()[name].reshape(-1)[start:stop])
    np.testing.assert_array_equal(ranks[0].averaged()["b"], np.zeros(5))   # not its share: never averaged
    again = optim.WeightAverage(make_params(), 0.9)
    again.load_state_dict(whole.state_dict())
    for name in SHAPES:
        np.testing.assert_array_equal(again.averaged()[name], whole.averaged()[name])
    with pytest.raises(ValueError, match="average/b"):
        optim.WeightAverage(params[:1], 0.9).load_state_dict(whole.state_dict())


@pytest.mark.parametrize("decay", [0, 1, -0.1, 1.5, float("nan")])
def test_weight_average_refuses_a_decay_outside_0_1(decay):
    with pytest.raises(ValueError, match="decay"):
        optim.WeightAverage(make_params(), decay)
