"""The checking cells of the notebooks' exercises: each `check_*` prints whether the reader's answer is right
(and if not, what is off) and returns True (right), False (wrong) or None (not answered yet: the answer is
still `...`, returns None, or raises NotImplementedError). A checker never raises on a wrong answer, so
the notebook runs on; the solutions at the end of each notebook assert that their checker returns True,
which is how `make test` verifies them.

    check_forget_bias_prediction   chapter 1: the cell path's per-step factor, predicted from b_f
    check_diagonal_backward        chapter 3: the "diagonal" variant's backward of one step, by hand
    check_missing_W_co_prediction  chapter 4: which gradient checks survive dropping W_coᵀ ∂L/∂a_o
"""
import contextlib

import numpy as np

import lstm_np as ln
from lstm_np.gradcheck import TOLERANCE, check_gradients, check_lstm

NOT_ANSWERED = "not answered yet: replace the `...` in the answer cell above and run both cells again"


def _answer(fn, *args):
    """fn(*args), or None for an answer that is still the template's `...` or raises NotImplementedError."""
    try:
        value = fn(*args) if callable(fn) else fn
    except NotImplementedError:
        return None
    return None if value is None or value is Ellipsis else value


def _verdict(right, message):
    print(("right: " if right else "not right yet: ") + message)
    return right


# ---------------------------------------------------------------------------------------------------------
# chapter 1
FACTOR_TOLERANCE = 0.03    # relative: the measured factors scatter by ~1% between seeds


def check_forget_bias_prediction(predict, measured):
    """predict(b_f) -> the per-step factor by which the gradient on the cell path shrinks, predicted from
    the forget bias alone. measured: {b_f: the factor fitted to a measured gradient profile}."""
    predicted = {b_f: _answer(predict, b_f) for b_f in measured}
    if any(p is None for p in predicted.values()):
        print(NOT_ANSWERED)
        return None
    print("  b_f   predicted   measured")
    off = []
    for b_f, m in measured.items():
        p = float(predicted[b_f])
        ok = abs(p / m - 1) <= FACTOR_TOLERANCE
        off += [] if ok else [b_f]
        print(f"{b_f:5g}   {p:9.3f}   {m:8.3f}   {'ok' if ok else 'off'}")
    return _verdict(not off, f"every prediction within {FACTOR_TOLERANCE:.0%} of the measurement" if not off
                    else f"off by more than {FACTOR_TOLERANCE:.0%} for b_f = {', '.join(f'{b:g}' for b in off)}")


# ---------------------------------------------------------------------------------------------------------
# chapter 3
DIAGONAL_GRADIENTS = ("c_prev", "W_ci", "W_cf", "W_co")


def check_diagonal_backward(backward, seed=0):
    """backward(P, x, h_prev, c_prev, g_h, g_c) -> {"c_prev": ∂L/∂c_{t-1}, "W_ci": ∂L/∂w_ci, "W_cf": ...,
    "W_co": ...} for one step of the "diagonal" cell and L = g_h · h_t + g_c · c_t, all vectors (H,).
    P is the cell's equation_params() (W_ci, W_cf, W_co are vectors of H). Checked against central
    differences (lstm_np.gradcheck) on a random cell with nonzero biases."""
    D, H = 2, 3
    rng = np.random.default_rng(seed)
    cell = ln.LSTMCell(D, H, peephole="diagonal", dtype=np.float64, seed=seed)
    for _, value, _ in cell.named_parameters():
        value[...] = rng.normal(0.0, 0.5, size=value.shape)
    x, h_prev, c_prev, g_h, g_c = (rng.normal(size=n) for n in (D, H, H, H, H))
    P = cell.equation_params()

    answer = _answer(backward, {k: v.copy() for k, v in P.items()}, x.copy(), h_prev.copy(), c_prev.copy(),
                     g_h.copy(), g_c.copy())
    if answer is None:
        print(NOT_ANSWERED)
        return None
    missing = [k for k in DIAGONAL_GRADIENTS if k not in answer]
    if missing:
        return _verdict(False, f"the answer has no {missing} (it must return a dict with keys {DIAGONAL_GRADIENTS})")
    shapes = [k for k in DIAGONAL_GRADIENTS if np.shape(answer[k]) != (H,)]
    if shapes:
        return _verdict(False, f"{shapes} must be vectors of shape ({H},), got "
                        + ", ".join(str(np.shape(answer[k])) for k in shapes))

    def loss():
        h, c = cell.forward(x[None], h_prev[None], c_prev[None])
        return float(g_h @ h[0] + g_c @ c[0])

    arrays = {"c_prev": c_prev, "W_ci": P["W_ci"], "W_cf": P["W_cf"], "W_co": P["W_co"]}
    errors = check_gradients(loss, arrays, {k: np.asarray(answer[k], dtype=np.float64) for k in arrays})
    for name, err in errors.items():
        print(f"∂L/∂{name:7} relative error {err:.1e}  {'ok' if err <= TOLERANCE else 'WRONG'}")
    wrong = [name for name, err in errors.items() if err > TOLERANCE]
    return _verdict(not wrong, "every gradient matches central differences" if not wrong
                    else f"{', '.join('∂L/∂' + w for w in wrong)} disagree with central differences")


# ---------------------------------------------------------------------------------------------------------
# chapter 4
@contextlib.contextmanager
def output_peephole_term_removed():
    """Within this block every LSTMCell's backward leaves out the term W_coᵀ ∂L/∂a_o (w_co ⊙ ∂L/∂a_o for
    "diagonal") of ∂L/∂c_t: the transposed output peephole it reads from `backward_weights` is zero. The
    forward is untouched."""
    original = ln.LSTMCell.backward_weights

    def without_term(self, batch):
        W_T = original(self, batch)
        for name in ("W_co", "p_co"):
            if name in W_T:
                W_T[name] = np.zeros_like(W_T[name])
        return W_T

    ln.LSTMCell.backward_weights = without_term
    try:
        yield
    finally:
        ln.LSTMCell.backward_weights = original


def passing_arrays(T):
    """{array name: relative error} of `check_lstm("full", T=T)` with the W_coᵀ term removed (names without
    the layer prefix: "x", "h0", "c0", "W_xi", ...)."""
    with output_peephole_term_removed():
        errors = check_lstm("full", T=T)
    return {name.split(".")[-1]: err for name, err in errors.items()}


def check_missing_W_co_prediction(survive_T1, survive_T2):
    """survive_T1, survive_T2: the sets of array names ("x", "h0", "c0", "W_xi", ..., "b_o") whose gradient
    check still passes, for sequences of T = 1 and T = 2 steps, once the backward leaves out W_coᵀ ∂L/∂a_o."""
    answers = {1: _answer(survive_T1), 2: _answer(survive_T2)}
    if any(a is None for a in answers.values()):
        print(NOT_ANSWERED)
        return None
    errors = {T: passing_arrays(T) for T in answers}
    if all(e <= TOLERANCE for e in errors[1].values()):
        raise AssertionError("removing the W_coᵀ term broke no gradient: output_peephole_term_removed no longer "
                             "removes it (has LSTMCell.backward_weights changed?)")
    names = list(errors[1])
    unknown = set().union(*answers.values()) - set(names)
    if unknown:
        return _verdict(False, f"{sorted(unknown)} are not arrays of the check; they are {names}")
    print("array   T=1 error  passes  predicted   T=2 error  passes  predicted")
    wrong = []
    for n in names:
        row = f"{n:6}"
        for T in (1, 2):
            passes, predicted = errors[T][n] <= TOLERANCE, n in answers[T]
            wrong += [] if passes == predicted else [(n, T)]
            row += f"  {errors[T][n]:9.1e}  {'yes' if passes else 'no':6}  {'yes' if predicted else 'no':9}"
        print(row.rstrip())
    return _verdict(not wrong, "both predictions match the checks" if not wrong
                    else "mispredicted " + ", ".join(f"{n} at T={T}" for n, T in wrong))
