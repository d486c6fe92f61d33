"""An independent, deliberately plain implementation of the documented equations (docs/design.md §1).

One sequence at a time, one step at a time, weights in equation orientation (W_xi is (H, D)), no fusion,
no buffers: the forward that lstm_np's fused code must agree with.
"""
import numpy as np


def sigma(z):
    return 1.0 / (1.0 + np.exp(-z))


def peep(P, name, c, peephole):
    """The peephole term W_c* c: a matrix product ("full"), elementwise ("diagonal") or absent ("none")."""
    if peephole == "none" or name not in P:
        return 0.0
    W = P[name]
    return W @ c if W.ndim == 2 else W * c


def reference_step(P, peephole, x, h, c):
    """One step for one sequence: x (D,), h (H,), c (H,) -> h_t, c_t, exactly as the equations read."""
    i = sigma(P["W_xi"] @ x + P["W_hi"] @ h + peep(P, "W_ci", c, peephole) + P["b_i"])
    f = sigma(P["W_xf"] @ x + P["W_hf"] @ h + peep(P, "W_cf", c, peephole) + P["b_f"])
    c_tilde = np.tanh(P["W_xc"] @ x + P["W_hc"] @ h + peep(P, "W_cc", c, peephole) + P["b_c"])
    c_new = f * c + i * c_tilde
    o = sigma(P["W_xo"] @ x + P["W_ho"] @ h + peep(P, "W_co", c_new, peephole) + P["b_o"])
    return o * np.tanh(c_new), c_new


def reference_layer(P, peephole, x, h0, c0, lengths=None, reverse=False):
    """x (T, B, D) -> y (T, B, H), h_n (B, H), c_n (B, H), with packed-sequence semantics for `lengths`."""
    T, B, _ = x.shape
    H = h0.shape[1]
    y = np.zeros((T, B, H))
    h_n, c_n = np.zeros((B, H)), np.zeros((B, H))
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        steps = range(n - 1, -1, -1) if reverse else range(n)
        h, c = h0[b].astype(np.float64), c0[b].astype(np.float64)
        for t in steps:
            h, c = reference_step(P, peephole, x[t, b].astype(np.float64), h, c)
            y[t, b] = h
        h_n[b], c_n[b] = h, c
    return y, h_n, c_n


def reference_lstm(lstm, x, h0=None, c0=None, lengths=None):
    """The whole stack (layers, directions) by `reference_layer`, reading lstm's equation_params."""
    L, nd, H = lstm.num_layers, lstm.num_directions, lstm.hidden_size
    B = x.shape[1]
    h0 = np.zeros((L * nd, B, H)) if h0 is None else h0
    c0 = np.zeros((L * nd, B, H)) if c0 is None else c0
    h_n, c_n = np.zeros((L * nd, B, H)), np.zeros((L * nd, B, H))
    layer_in = x
    for layer in range(L):
        outs = []
        for d in range(nd):
            k = layer * nd + d
            P = {n: np.asarray(v, np.float64) for n, v in lstm.cell(layer, d).equation_params().items()}
            y, h_n[k], c_n[k] = reference_layer(P, lstm.peephole, layer_in, h0[k], c0[k], lengths, reverse=d == 1)
            outs.append(y)
        layer_in = np.concatenate(outs, axis=2)
    return layer_in, h_n, c_n
