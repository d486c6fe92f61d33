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


def reference_step_values(P, peephole, x, h, c):
    """One step for one sequence: x (D,), h (H,), c (H,) -> {"i", "f", "o", "c_tilde", "c", "h"} (H,) each:
    the gates and the new states, exactly as the equations read."""
    i = sigma(P["W_xi"] @ x + P["W_hi"] @ h + peep(P, "W_ci", c, peephole) + P["b_i"])
    f = sigma(P["W_xf"] @ x + P["W_hf"] @ h + peep(P, "W_cf", c, peephole) + P["b_f"])
    c_tilde = np.tanh(P["W_xc"] @ x + P["W_hc"] @ h + peep(P, "W_cc", c, peephole) + P["b_c"])
    c_new = f * c + i * c_tilde
    o = sigma(P["W_xo"] @ x + P["W_ho"] @ h + peep(P, "W_co", c_new, peephole) + P["b_o"])
    return {"i": i, "f": f, "o": o, "c_tilde": c_tilde, "c": c_new, "h": o * np.tanh(c_new)}


def reference_layer(P, peephole, x, h0, c0, lengths=None, reverse=False, record=None):
    """x (T, B, D) -> y (T, B, H), h_n (B, H), c_n (B, H), with packed-sequence semantics for `lengths`.

    With a dict `record`, also fills record[name] (T, B, H) with every step's `reference_step_values`,
    indexed by the position the step reads (zeros at padded positions)."""
    T, B, _ = x.shape
    H = h0.shape[1]
    y = np.zeros((T, B, H))
    h_n, c_n = np.zeros((B, H)), np.zeros((B, H))
    if record is not None:
        record.update({name: np.zeros((T, B, H)) for name in ("i", "f", "o", "c_tilde", "c", "h")})
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        steps = range(n - 1, -1, -1) if reverse else range(n)
        h, c = h0[b].astype(np.float64), c0[b].astype(np.float64)
        for t in steps:
            values = reference_step_values(P, peephole, x[t, b].astype(np.float64), h, c)
            h, c = values["h"], values["c"]
            y[t, b] = h
            if record is not None:
                for name, v in values.items():
                    record[name][t, b] = v
        h_n[b], c_n[b] = h, c
    return y, h_n, c_n


def reference_lstm(lstm, x, h0=None, c0=None, lengths=None, record=None):
    """The whole stack (layers, directions) by `reference_layer`, reading lstm's equation_params; with a dict
    `record`, record[layer, direction] is that layer's `reference_layer` record."""
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
            rec = None if record is None else record.setdefault((layer, d), {})
            y, h_n[k], c_n[k] = reference_layer(P, lstm.peephole, layer_in, h0[k], c0[k], lengths, reverse=d == 1,
                                                record=rec)
            outs.append(y)
        layer_in = np.concatenate(outs, axis=2)
    return layer_in, h_n, c_n
