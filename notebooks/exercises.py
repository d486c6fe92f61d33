"""The checking cells of the notebooks' exercises: each `check_*` prints whether the reader's answer is right
(and if not, what is off) and returns True (right), False (wrong) or None (not answered yet: the answer is
still `...`, returns None, or raises NotImplementedError). A checker never raises on a wrong answer, so
the notebook runs on; the solutions at the end of each notebook assert that their checker returns True,
which is how `make test` verifies them.

The "write the code" exercises (CS231n-style: the reader fills in a stub) have their solutions in
notebooks/solutions.py, out of sight of a reader who only runs the chapters; tests/test_notebooks.py proves
that each solution passes its checker and that a solution with one mistake fails it, naming the mistake.
Each of those checkers compares the reader's values with lstm_np's and each gradient also with central
differences (lstm_np.gradcheck, float64, a seeded random problem with nonzero biases and a random upstream
gradient), and names every value or gradient that is wrong.

    check_forget_bias_prediction   chapter 1: the cell path's per-step factor, predicted from b_f
    check_lstm_step_forward        chapter 2: write one step of the full-peephole LSTM
    check_lstm_step_backward       chapter 3: write its backward
    check_lstm_sequence            chapter 3: the forward and backward over a sequence (BPTT)
    check_diagonal_backward        chapter 3: the "diagonal" variant's backward of one step, by hand
    check_missing_W_co_prediction  chapter 4: which gradient checks survive dropping W_coᵀ ∂L/∂a_o
    check_softmax_loss             chapter 5: the masked softmax cross-entropy and its gradient
    check_welch_t                  chapter 6: Welch's t statistic and its degrees of freedom
    check_embedding_backward       chapter 7: the embedding's backward, with repeated ids
"""
import contextlib

import numpy as np

import lstm_np as ln
from lstm_np.gradcheck import TOLERANCE, check_gradients, check_lstm, numerical_gradient, relative_error

NOT_ANSWERED = ("not answered yet: replace the `...` (or `raise NotImplementedError`) in the answer cell above and "
                "run both cells again")


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



# ---------------------------------------------------------------------------------------------------------
# "write the code" exercises: shared helpers
CODE_TOLERANCE = 1e-7      # relative error per array, float64: a right answer gives ~1e-9 or less, a wrong one ~1e-2


def _random_cell(D, H, seed):
    """A float64 full-peephole LSTMCell with every parameter drawn N(0, 0.5²) (nonzero biases)."""
    rng = np.random.default_rng(seed)
    cell = ln.LSTMCell(D, H, peephole="full", dtype=np.float64, seed=seed)
    for _, value, _ in cell.named_parameters():
        value[...] = rng.normal(0.0, 0.5, size=value.shape)
    return cell, rng


def _call(fn, *args):
    """(result, None) or (None, message): the reader's function called on copies of the inputs."""
    args = [{k: v.copy() for k, v in a.items()} if isinstance(a, dict) else
            (a.copy() if isinstance(a, np.ndarray) else a) for a in args]
    try:
        value = fn(*args)
    except NotImplementedError:
        return None, None
    except Exception as exc:                       # a reader's bug: say what it raised, keep the notebook going
        return None, f"{fn.__name__} raised {type(exc).__name__}: {exc}"
    if value is None or value is Ellipsis:
        return None, None
    return value, None


def _compare_values(names, answer, expected):
    """Print each value against lstm_np's; -> the names that are wrong (shape or value)."""
    wrong = []
    for name in names:
        a, e = answer.get(name), expected[name]
        if a is None or np.shape(a) != np.shape(e):
            print(f"{name:10} shape {np.shape(a) if a is not None else 'missing'}, expected {np.shape(e)}  WRONG")
            wrong.append(name)
            continue
        err = relative_error(np.asarray(a, np.float64), e)
        ok = err <= CODE_TOLERANCE
        print(f"{name:10} relative error against lstm_np {err:.1e}  {'ok' if ok else 'WRONG'}")
        wrong += [] if ok else [name]
    return wrong


def _compare_gradients(answer, library, loss, arrays):
    """Print each gradient against lstm_np's and against central differences of loss() w.r.t. arrays[name];
    -> the names whose gradient is wrong."""
    wrong = []
    print(f"{'gradient':12} {'vs lstm_np':>11} {'vs central differences':>23}")
    for name, array in arrays.items():
        a = answer.get(name)
        if a is None or np.shape(a) != array.shape:
            print(f"∂L/∂{name:8} shape {np.shape(a) if a is not None else 'missing'}, expected {array.shape}  WRONG")
            wrong.append(name)
            continue
        a = np.asarray(a, np.float64)
        err_lib = relative_error(a, library[name])
        err_num = relative_error(a, numerical_gradient(loss, array))
        ok = max(err_lib, err_num) <= CODE_TOLERANCE
        print(f"∂L/∂{name:8} {err_lib:11.1e} {err_num:23.1e}  {'ok' if ok else 'WRONG'}")
        wrong += [] if ok else [name]
    return wrong


def _gradients_verdict(wrong):
    return _verdict(not wrong, "every gradient matches lstm_np and central differences" if not wrong
                    else f"{', '.join('∂L/∂' + w for w in wrong)} disagree")


def _split_step_answer(value, n, what):
    """A tuple of n items from the reader's function, or None after saying what was expected."""
    if not isinstance(value, tuple) or len(value) != n:
        print(f"not right yet: {what}")
        return None
    return value


# ---------------------------------------------------------------------------------------------------------
# chapter 2: one step forward
def _step_problem(seed, B=3, D=4, H=5):
    cell, rng = _random_cell(D, H, seed)
    x, h_prev, c_prev = rng.normal(size=(B, D)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    return cell, rng, x, h_prev, c_prev


def check_lstm_step_forward(step_forward, seed=0):
    """step_forward(x (B, D), h_prev (B, H), c_prev (B, H), P) -> (h_t, c_t, cache) for the full-peephole
    equations, P the cell's equation_params() (W_x* (H, D), W_h*, W_c* (H, H), b_* (H,)). Compared with
    LSTMCell.forward."""
    cell, _, x, h_prev, c_prev = _step_problem(seed)
    value, error = _call(step_forward, x, h_prev, c_prev, cell.equation_params())
    if value is None:
        return _verdict(False, error) if error else print(NOT_ANSWERED)
    value = _split_step_answer(value, 3, "step_forward must return (h_t, c_t, cache)")
    if value is None:
        return False
    h_lib, c_lib = cell.forward(x, h_prev, c_prev)
    wrong = _compare_values(("h_t", "c_t"), {"h_t": value[0], "c_t": value[1]}, {"h_t": h_lib, "c_t": c_lib})
    if "c_t" in wrong and "h_t" in wrong:
        print("(c_t is wrong, and h_t = o_t ⊙ tanh(c_t) reads it: fix c_t first)")
    elif "h_t" in wrong:
        print("(c_t is right, so look at o_t, which peeks at the NEW c_t, and at h_t = o_t ⊙ tanh(c_t))")
    return _verdict(not wrong, "h_t and c_t match LSTMCell.forward" if not wrong
                    else f"{' and '.join(wrong)} differ from LSTMCell.forward")


# ---------------------------------------------------------------------------------------------------------
# chapter 3: one step backward, and a whole sequence
def check_lstm_step_backward(step_forward, step_backward, seed=1):
    """step_backward(dh (B, H), dc (B, H), cache) -> (dx, dh_prev, dc_prev, grads) with grads a dict with
    the keys of P, for the loss L = Σ g_h ⊙ h_t + Σ g_c ⊙ c_t (g_h, g_c random: dh = g_h, dc = g_c).
    `cache` is what the reader's step_forward returned, so step_forward must pass its checker first."""
    cell, rng, x, h_prev, c_prev = _step_problem(seed)
    P = cell.equation_params()
    g_h, g_c = rng.normal(size=h_prev.shape), rng.normal(size=c_prev.shape)
    value, error = _call(step_forward, x, h_prev, c_prev, P)
    if value is None:
        return _verdict(False, error) if error else print(
            "not answered yet: write lstm_step_forward first (Exercise 2.1, check_lstm_step_forward)")
    h_lib, c_lib = cell.forward(x, h_prev, c_prev)
    if not (isinstance(value, tuple) and len(value) == 3 and np.shape(value[0]) == h_lib.shape
            and relative_error(value[0], h_lib) <= CODE_TOLERANCE and relative_error(value[1], c_lib) <= CODE_TOLERANCE):
        return _verdict(False, "step_forward does not pass check_lstm_step_forward yet: fix it first")
    answer, error = _call(step_backward, g_h, g_c, value[2])
    if answer is None:
        return _verdict(False, error) if error else print(NOT_ANSWERED)
    answer = _split_step_answer(answer, 4, "step_backward must return (dx, dh_prev, dc_prev, grads)")
    if answer is None:
        return False
    dx, dh_prev, dc_prev, grads = answer
    if not isinstance(grads, dict):
        return _verdict(False, "grads must be a dict with the keys of P (W_xi, W_hi, W_ci, b_i, ...)")
    cell.zero_grad()
    cell.forward(x, h_prev, c_prev)
    library = dict(zip(("x", "h_prev", "c_prev"), cell.backward(g_h, g_c)), **cell.equation_grads())

    def loss():
        h, c = cell.forward(x, h_prev, c_prev)
        return float(np.sum(g_h * h) + np.sum(g_c * c))

    arrays = dict({"x": x, "h_prev": h_prev, "c_prev": c_prev}, **P)
    wrong = _compare_gradients(dict(grads, x=dx, h_prev=dh_prev, c_prev=dc_prev), library, loss, arrays)
    return _gradients_verdict(wrong)


def _sequence_problem(seed, T=4, B=2, D=3, H=4):
    cell, rng = _random_cell(D, H, seed)
    lstm = ln.LSTM(D, H, peephole="full", dtype=np.float64, seed=seed)
    for name, value in lstm.cell(0).equation_params().items():
        value[...] = cell.equation_params()[name]
    xs, h0, c0, dys = (rng.normal(size=s) for s in ((T, B, D), (B, H), (B, H), (T, B, H)))
    return lstm, xs, h0, c0, dys


def check_lstm_sequence(forward, backward, seed=2):
    """forward(xs (T, B, D), h0 (B, H), c0 (B, H), P) -> (hs (T, B, H), cache);
    backward(dhs (T, B, H), cache) -> (dxs, dh0, dc0, grads) for L = Σ_t Σ dhs_t ⊙ h_t (dhs random).
    Compared with LSTM.forward/backward (one layer, full peephole) and central differences."""
    lstm, xs, h0, c0, dys = _sequence_problem(seed)
    P = lstm.cell(0).equation_params()
    value, error = _call(forward, xs, h0, c0, P)
    if value is None:
        return _verdict(False, error) if error else print(NOT_ANSWERED)
    value = _split_step_answer(value, 2, "forward must return (hs, cache)")
    if value is None:
        return False
    y_lib, _ = lstm.forward(xs, h0[None], c0[None])
    wrong = _compare_values(("hs",), {"hs": value[0]}, {"hs": y_lib})
    if wrong:
        return _verdict(False, "the forward's hs differ from LSTM.forward: fix the forward first")
    answer, error = _call(backward, dys, value[1])
    if answer is None:
        return _verdict(False, error) if error else print(NOT_ANSWERED)
    answer = _split_step_answer(answer, 4, "backward must return (dxs, dh0, dc0, grads)")
    if answer is None:
        return False
    dxs, dh0, dc0, grads = answer
    if not isinstance(grads, dict):
        return _verdict(False, "grads must be a dict with the keys of P (W_xi, W_hi, W_ci, b_i, ...)")
    lstm.zero_grad()
    lstm.forward(xs, h0[None], c0[None])
    dx_lib, (dh0_lib, dc0_lib) = lstm.backward(dys)
    library = dict({"xs": dx_lib, "h0": dh0_lib[0], "c0": dc0_lib[0]}, **lstm.cell(0).equation_grads())

    def loss():
        y, _ = lstm.forward(xs, h0[None], c0[None])
        return float(np.sum(dys * y))

    arrays = dict({"xs": xs, "h0": h0, "c0": c0}, **P)
    wrong = _compare_gradients(dict(grads, xs=dxs, h0=dh0, c0=dc0), library, loss, arrays)
    return _gradients_verdict(wrong)


# ---------------------------------------------------------------------------------------------------------
# chapter 5: the loss
def check_softmax_loss(softmax_loss, seed=3, T=4, B=3, V=6):
    """softmax_loss(logits (T, B, V), targets (T, B) int, mask (T, B) bool) -> (loss, dlogits): the mean
    cross-entropy over the positions where mask is True, and its gradient. Compared with
    lstm_np.masked_cross_entropy and central differences."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, size=(T, B, V))
    targets = rng.integers(0, V, size=(T, B))
    mask = np.ones((T, B), dtype=bool)
    mask[2:, 0], mask[3:, 2] = False, False                        # two sequences end early (padding)
    value, error = _call(softmax_loss, logits, targets, mask)
    if value is None:
        return _verdict(False, error) if error else print(NOT_ANSWERED)
    value = _split_step_answer(value, 2, "softmax_loss must return (loss, dlogits)")
    if value is None:
        return False
    loss_lib, dlogits_lib = ln.masked_cross_entropy(logits, targets, mask)
    wrong = _compare_values(("loss",), {"loss": np.float64(value[0])}, {"loss": np.float64(loss_lib)})
    if wrong:
        print("(the mean is over the real tokens: divide by mask.sum(), not by T·B)" if
              np.isclose(value[0] * mask.size / mask.sum(), loss_lib) else "")
        return _verdict(False, "the loss differs from lstm_np.masked_cross_entropy")
    wrong = _compare_gradients({"logits": value[1]}, {"logits": dlogits_lib},
                               lambda: ln.masked_cross_entropy(logits, targets, mask)[0], {"logits": logits})
    if wrong and np.ndim(value[1]) == 3 and np.abs(np.asarray(value[1])[~mask]).max() > 0:
        print("(padded positions must get a zero gradient)")
    return _gradients_verdict(wrong)


# ---------------------------------------------------------------------------------------------------------
# chapter 6: comparing two sets of runs
WELCH_SAMPLES = ([0.978, 0.969, 0.985, 0.981, 0.972], [0.992, 0.988, 0.999, 0.990, 0.991, 0.995])


def welch_reference(a, b):
    """Welch's t = (mean a − mean b) / √(s_a²/n_a + s_b²/n_b) and its Welch–Satterthwaite degrees of freedom."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    return (a.mean() - b.mean()) / np.sqrt(va + vb), (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))


def check_welch_t(welch_t):
    """welch_t(a, b) -> (t, df) for two lists of scores (unequal sizes and variances)."""
    a, b = WELCH_SAMPLES
    value, error = _call(welch_t, list(a), list(b))
    if value is None:
        return _verdict(False, error) if error else print(NOT_ANSWERED)
    value = _split_step_answer(value, 2, "welch_t must return (t, df)")
    if value is None:
        return False
    t_ref, df_ref = welch_reference(a, b)
    ok_t, ok_df = np.isclose(value[0], t_ref, rtol=1e-6), np.isclose(value[1], df_ref, rtol=1e-6)
    print(f"t   {float(value[0]):8.3f}   expected {t_ref:8.3f}  {'ok' if ok_t else 'WRONG'}")
    print(f"df  {float(value[1]):8.3f}   expected {df_ref:8.3f}  {'ok' if ok_df else 'WRONG'}")
    if not ok_t and np.isclose(abs(value[0]), abs(t_ref), rtol=1e-6):
        print("(the sign: t is mean(a) − mean(b))")
    wrong = [n for n, ok in (("t", ok_t), ("df", ok_df)) if not ok]
    return _verdict(not wrong, "t and its degrees of freedom are right" if not wrong
                    else f"{' and '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} off (sample variances use n − 1)")


# ---------------------------------------------------------------------------------------------------------
# chapter 7: the embedding
def check_embedding_backward(embedding_backward, seed=4, V=6, E=3):
    """embedding_backward(dout (..., E), ids (...) int, V) -> dW (V, E) for y = W[ids], with ids that repeat.
    Compared with Embedding.backward and central differences of L = Σ dout ⊙ W[ids]."""
    rng = np.random.default_rng(seed)
    ids = np.array([[1, 4, 4, 2], [4, 0, 1, 1]])                    # 4 three times, 1 three times, 3 and 5 never
    dout = rng.normal(size=ids.shape + (E,))
    layer = ln.Embedding(V, E, dtype=np.float64, seed=seed)
    layer.forward(ids)
    layer.backward(dout)
    value, error = _call(embedding_backward, dout, ids, V)
    if value is None:
        return _verdict(False, error) if error else print(NOT_ANSWERED)
    wrong = _compare_gradients({"W": value}, {"W": layer.dW}, lambda: float(np.sum(dout * layer.W[ids])),
                               {"W": layer.W})
    if wrong and np.shape(value) == (V, E):
        counted = [int(v) for v in np.unique(ids) if not np.allclose(value[v], layer.dW[v], atol=1e-9)]
        print(f"(rows {counted} are off: an id that appears several times must collect the sum of its gradients)"
              if counted and all((ids == v).sum() > 1 for v in counted) else "")
    return _gradients_verdict(wrong)
