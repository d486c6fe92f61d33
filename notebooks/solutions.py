"""Solutions to the "write the code" exercises of the chapters. Try each exercise first: the checking cell
under its stub says what is wrong with an attempt, which teaches more than reading this file.

tests/test_notebooks.py runs each solution through its checker in notebooks/exercises.py (it must pass) and
a copy with one mistake (it must fail, naming the mistake).

    lstm_step_forward, lstm_step_backward    Exercises 2.1 and 3.2: one step of the full-peephole LSTM
    lstm_forward, lstm_backward              Exercise 3.3: a sequence, built from the two step functions
    softmax_loss                             Exercise 5.1: masked softmax cross-entropy and its gradient
    welch_t                                  Exercise 6.1: Welch's t and its degrees of freedom
    embedding_backward                       Exercise 7.1: the embedding's scatter-add

Row convention: a batch of B rows, so W_xi x_t is written x @ W_xi.T.
"""
import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def lstm_step_forward(x, h_prev, c_prev, P):
    """x (B, D), h_prev, c_prev (B, H), P: equation_params() of a "full" cell -> h_t, c_t (B, H), cache."""
    def pre(g, c):                                   # W_xg x_t + W_hg h_{t-1} + W_cg c + b_g          (B, H)
        return x @ P[f"W_x{g}"].T + h_prev @ P[f"W_h{g}"].T + c @ P[f"W_c{g}"].T + P[f"b_{g}"]

    i = sigmoid(pre("i", c_prev))                    # i_t = σ(W_xi x_t + W_hi h_{t-1} + W_ci c_{t-1} + b_i)
    f = sigmoid(pre("f", c_prev))                    # f_t = σ(... W_cf c_{t-1} + b_f)
    g = np.tanh(pre("c", c_prev))                    # c~_t = tanh(... W_cc c_{t-1} + b_c)
    c = f * c_prev + i * g                           # c_t = f_t ⊙ c_{t-1} + i_t ⊙ c~_t
    o = sigmoid(pre("o", c))                         # o_t = σ(... W_co c_t + b_o): the NEW cell state
    tc = np.tanh(c)
    h = o * tc                                       # h_t = o_t ⊙ tanh(c_t)
    return h, c, (x, h_prev, c_prev, P, i, f, g, c, o, tc)


def lstm_step_backward(dh, dc, cache):
    """∂L/∂h_t, ∂L/∂c_t (B, H) from outside the step -> dx, dh_prev, dc_prev, {name: ∂L/∂name}."""
    x, h_prev, c_prev, P, i, f, g, c, o, tc = cache
    da_o = dh * tc * o * (1 - o)                     # ∂L/∂a_o = ∂L/∂h_t ⊙ tanh(c_t) ⊙ σ'
    dc = dc + dh * o * (1 - tc ** 2) + da_o @ P["W_co"]   # ∂L/∂c_t: outside + through tanh + through o's peephole
    da = {"i": dc * g * i * (1 - i),                 # ∂L/∂a_i = ∂L/∂c_t ⊙ c~_t ⊙ σ'
          "f": dc * c_prev * f * (1 - f),            # ∂L/∂a_f = ∂L/∂c_t ⊙ c_{t-1} ⊙ σ'
          "c": dc * i * (1 - g ** 2),                # ∂L/∂a_c = ∂L/∂c_t ⊙ i_t ⊙ tanh'
          "o": da_o}
    dx = sum(da[k] @ P[f"W_x{k}"] for k in "ifco")
    dh_prev = sum(da[k] @ P[f"W_h{k}"] for k in "ifco")
    dc_prev = dc * f + sum(da[k] @ P[f"W_c{k}"] for k in "ifc")   # the three peepholes that read c_{t-1}
    grads = {}
    for k in "ifco":
        grads[f"W_x{k}"] = da[k].T @ x
        grads[f"W_h{k}"] = da[k].T @ h_prev
        grads[f"W_c{k}"] = da[k].T @ (c if k == "o" else c_prev)
        grads[f"b_{k}"] = da[k].sum(axis=0)
    return dx, dh_prev, dc_prev, grads


def lstm_forward(xs, h0, c0, P):
    """xs (T, B, D), h0, c0 (B, H) -> hs (T, B, H), cache (the step caches)."""
    hs, caches, h, c = [], [], h0, c0
    for x in xs:
        h, c, cache = lstm_step_forward(x, h, c, P)
        hs.append(h)
        caches.append(cache)
    return np.stack(hs), caches


def lstm_backward(dhs, caches):
    """dhs (T, B, H) = ∂L/∂h_t from above -> dxs (T, B, D), dh0, dc0 (B, H), {name: ∂L/∂name} summed over t."""
    dh_next, dc_next = np.zeros_like(dhs[0]), np.zeros_like(dhs[0])
    dxs, grads = [], {}
    for t in reversed(range(len(dhs))):
        dx, dh_next, dc_next, g = lstm_step_backward(dhs[t] + dh_next, dc_next, caches[t])
        dxs.append(dx)
        for name, value in g.items():
            grads[name] = grads.get(name, 0) + value
    return np.stack(dxs[::-1]), dh_next, dc_next, grads


def softmax_loss(logits, targets, mask):
    """logits (T, B, V), targets (T, B), mask (T, B) -> mean cross-entropy over real tokens, ∂loss/∂logits."""
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))            # log softmax       (T, B, V)
    N = mask.sum()
    picked = np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    loss = -(picked * mask).sum() / N
    dlogits = np.exp(logp)                                               # softmax
    np.put_along_axis(dlogits, targets[..., None],
                      np.take_along_axis(dlogits, targets[..., None], axis=-1) - 1, axis=-1)   # - onehot
    return loss, dlogits * mask[..., None] / N


def welch_t(a, b):
    """Welch's t of mean(a) − mean(b) and its Welch–Satterthwaite degrees of freedom."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return t, df


def embedding_backward(dout, ids, V):
    """dout (..., E), ids (...) -> dW (V, E): every occurrence of an id adds its gradient to that row."""
    dW = np.zeros((V, dout.shape[-1]))
    np.add.at(dW, ids.reshape(-1), dout.reshape(-1, dout.shape[-1]))
    return dW
