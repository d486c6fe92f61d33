"""One step of the documented peephole LSTM: forward and hand-derived backward.

The equations (DESIGN.md §1), for a batch of B rows, input size D and hidden size H:

    i_t  = σ(W_xi x_t + W_hi h_{t-1} + W_ci c_{t-1} + b_i)
    f_t  = σ(W_xf x_t + W_hf h_{t-1} + W_cf c_{t-1} + b_f)
    c~_t = tanh(W_xc x_t + W_hc h_{t-1} + W_cc c_{t-1} + b_c)
    c_t  = f_t ⊙ c_{t-1} + i_t ⊙ c~_t
    o_t  = σ(W_xo x_t + W_ho h_{t-1} + W_co c_t + b_o)      # o_t peeks at the NEW cell c_t
    h_t  = o_t ⊙ tanh(c_t)

peephole="full" uses (H, H) matrices W_ci, W_cf, W_cc, W_co; "diagonal" uses (H,) vectors on i, f, o
(elementwise, no W_cc); "none" drops the c-terms (the plain LSTM of torch.nn.LSTM).

Storage (an implementation choice; `equation_params()` gives the named views in equation orientation):
the four gates are fused in the order [i, f, c~, o] along the last axis and weights are stored transposed,
so one step is a row-major GEMM `x @ W`:

    W_x  (D, 4H)   input weights           W_x[:, I].T is W_xi, ...
    W_h  (H, 4H)   recurrent weights       W_h[:, F].T is W_hf, ...
    b    (4H,)     biases
    full:     W_c (H, 3H) = c_{t-1} -> [i, f, c~]   and   W_co (H, H) = c_t -> o
    diagonal: p_c (2H,)   = c_{t-1} ⊙ -> [i, f]     and   p_co (H,)   = c_t ⊙ -> o

The step functions work on buffers that the sequence loop in `lstm.py` preallocates: the gate buffer `a`
(B, 4H) arrives holding x_t W_x + b (all time steps are projected with one GEMM before the loop) and leaves
holding the activated gates [i, f, c~, o]; the state is kept as one row `hc = [h | c]` (B, 2H) so that for
"full" the h_{t-1} and c_{t-1} terms of i, f, c~ are ONE GEMM `[h_{t-1} | c_{t-1}] @ W_rec`, with
W_rec = [[W_h], [W_c | 0]] (2H, 4H) built once per forward (o's c-term needs the new c_t, so it cannot join).
"""
import numpy as np

from .functional import sigmoid, tanh

PEEPHOLES = ("full", "diagonal", "none")
GATES = ("i", "f", "c", "o")  # fused order along the 4H axis; "c" is the candidate c~


def _check_size(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_dtype(dtype):
    """Return np.dtype(dtype) if it is float32 or float64, else raise TypeError naming `dtype`."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be np.float32 or np.float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be np.float32 or np.float64, got {dt}")
    return dt


def check_peephole(peephole):
    if peephole not in PEEPHOLES:
        raise ValueError(f"peephole must be one of {PEEPHOLES}, got {peephole!r}")
    return peephole


def as_float_array(name, value, dtype, shape=None):
    """`value` as a finite array of `dtype`; TypeError for non-numeric input, ValueError for bad shape/NaN/Inf.

    `shape` may contain None for "any size" in that axis.
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if shape is not None:
        ok = arr.ndim == len(shape) and all(s is None or s == n for s, n in zip(shape, arr.shape))
        if not ok:
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    arr = arr.astype(dtype, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return arr


class LSTMCell:
    """The documented peephole LSTM cell (DESIGN.md §1) with fused, transposed weight storage.

    Initialization: every weight uniform in ±1/sqrt(H) (as torch.nn.LSTM), biases zero except the forget
    gate's b_f = 1.0, so the cell starts by remembering (Jozefowicz et al., 2015).
    """

    def __init__(self, input_size, hidden_size, peephole="full", dtype=np.float64, seed=0):
        self.input_size = D = _check_size("input_size", input_size)
        self.hidden_size = H = _check_size("hidden_size", hidden_size)
        self.peephole = check_peephole(peephole)
        self.dtype = check_dtype(dtype)
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(H)

        def uniform(*shape):
            return rng.uniform(-k, k, size=shape).astype(self.dtype)

        self.params = {"W_x": uniform(D, 4 * H), "W_h": uniform(H, 4 * H),
                       "b": np.zeros(4 * H, dtype=self.dtype)}
        self.params["b"][H:2 * H] = 1.0  # b_f = 1
        if peephole == "full":
            self.params["W_c"] = uniform(H, 3 * H)
            self.params["W_co"] = uniform(H, H)
        elif peephole == "diagonal":
            self.params["p_c"] = uniform(2 * H)
            self.params["p_co"] = uniform(H)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._step_cache = None

    # ----------------------------------------------------------------------------------------------
    # parameters
    def named_parameters(self, prefix=""):
        """[(name, value, grad), ...] in storage orientation: what an optimizer updates in place."""
        return [(prefix + n, p, self.grads[n]) for n, p in self.params.items()]

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0)

    def _equation_views(self, store):
        """Named views of `store` (params or grads) in equation orientation; writes go through."""
        H = self.hidden_size
        views = {}
        for k, gate in enumerate(GATES):
            cols = slice(k * H, (k + 1) * H)
            views[f"W_x{gate}"] = store["W_x"][:, cols].T                      # (H, D)
            views[f"W_h{gate}"] = store["W_h"][:, cols].T                      # (H, H)
            if self.peephole == "full":
                views[f"W_c{gate}"] = (store["W_co"] if gate == "o" else store["W_c"][:, cols]).T  # (H, H)
            elif self.peephole == "diagonal" and gate != "c":
                views[f"W_c{gate}"] = store["p_co"] if gate == "o" else store["p_c"][cols]  # (H,)
            views[f"b_{gate}"] = store["b"][cols]                              # (H,)
        return views

    def equation_params(self):
        """{"W_xi": (H, D), "W_hi": (H, H), "W_ci": (H, H) or (H,), "b_i": (H,), ...}: views of the weights."""
        return self._equation_views(self.params)

    def equation_grads(self):
        """The accumulated gradients, with the keys and shapes of `equation_params()`."""
        return self._equation_views(self.grads)

    # ----------------------------------------------------------------------------------------------
    # the step, on preallocated buffers (used by the sequence loop in lstm.py)
    def recurrent_matrix(self):
        """The fused recurrent weight of one forward call: W_rec = [[W_h], [W_c | 0]] (2H, 4H) for "full",
        W_h (H, 4H) otherwise. Built once per sequence, so the per-step GEMM covers every c_{t-1} term."""
        if self.peephole != "full":
            return self.params["W_h"]
        H = self.hidden_size
        W_rec = np.zeros((2 * H, 4 * H), dtype=self.dtype)
        W_rec[:H] = self.params["W_h"]
        W_rec[H:, :3 * H] = self.params["W_c"]
        return W_rec

    def step_forward(self, a, hc_prev, hc, tc, W_rec):
        """One step of the equations, in place.

        a       (B, 4H)  in: x_t W_x + b; out: the activated gates [i, f, c~, o]
        hc_prev (B, 2H)  [h_{t-1} | c_{t-1}]
        hc      (B, 2H)  out: [h_t | c_t]
        tc      (B, H)   out: tanh(c_t), kept for the backward
        """
        H = self.hidden_size
        h_prev, c_prev = hc_prev[:, :H], hc_prev[:, H:]
        h, c = hc[:, :H], hc[:, H:]
        if self.peephole == "full":
            a += hc_prev @ W_rec                        # W_h· h_{t-1} + W_c· c_{t-1} for all gates   (B, 4H)
        else:
            a += h_prev @ W_rec                         # W_h· h_{t-1}                                 (B, 4H)
        if self.peephole == "diagonal":
            a[:, :H] += c_prev * self.params["p_c"][:H]        # + w_ci ⊙ c_{t-1}
            a[:, H:2 * H] += c_prev * self.params["p_c"][H:]   # + w_cf ⊙ c_{t-1}
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        sigmoid(a[:, :2 * H], out=a[:, :2 * H])         # i_t = σ(...), f_t = σ(...)                   (B, 2H)
        tanh(g, out=g)                                  # c~_t = tanh(W_xc x_t + W_hc h_{t-1} + W_cc c_{t-1} + b_c)
        np.multiply(f, c_prev, out=c)                   # c_t = f_t ⊙ c_{t-1} ...
        c += i * g                                      #       ... + i_t ⊙ c~_t                       (B, H)
        if self.peephole == "full":
            o += c @ self.params["W_co"]                # + W_co c_t  (the new cell)                  (B, H)
        elif self.peephole == "diagonal":
            o += c * self.params["p_co"]                # + w_co ⊙ c_t
        sigmoid(o, out=o)                               # o_t = σ(W_xo x_t + W_ho h_{t-1} + W_co c_t + b_o)
        tanh(c, out=tc)                                 # tanh(c_t)                                    (B, H)
        np.multiply(o, tc, out=h)                       # h_t = o_t ⊙ tanh(c_t)                        (B, H)

    def step_backward(self, dhc, gates, hc_prev, hc, tc, da, W_rec):
        """Backward of one step.

        dhc     (B, 2H)  [∂L/∂h_t | ∂L/∂c_t] from everything after this step (read only)
        gates   (B, 4H)  [i, f, c~, o] of this step;  hc_prev, hc, tc as in `step_forward`
        da      (B, 4H)  out: ∂L/∂(gate pre-activations), for the weight GEMMs after the loop
        returns (B, 2H)  [∂L/∂h_{t-1} | ∂L/∂c_{t-1}]
        """
        H = self.hidden_size
        i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
        c_prev = hc_prev[:, H:]
        dh, dc_next = dhc[:, :H], dhc[:, H:]
        da_i, da_f, da_g, da_o = da[:, :H], da[:, H:2 * H], da[:, 2 * H:3 * H], da[:, 3 * H:]
        np.multiply(dh * tc, o * (1 - o), out=da_o)     # ∂L/∂a_o = ∂L/∂h_t ⊙ tanh(c_t) ⊙ σ'(a_o)
        dc = dc_next + dh * o * (1 - tc * tc)           # ∂L/∂c_t = ∂L/∂c_t(next) + ∂L/∂h_t ⊙ o_t ⊙ tanh'(c_t) ...
        if self.peephole == "full":
            dc += da_o @ self.params["W_co"].T          #          ... + W_coᵀ ∂L/∂a_o  (o_t peeks at c_t)
        elif self.peephole == "diagonal":
            dc += da_o * self.params["p_co"]            #          ... + w_co ⊙ ∂L/∂a_o
        np.multiply(dc * g, i * (1 - i), out=da_i)      # ∂L/∂a_i = ∂L/∂c_t ⊙ c~_t ⊙ σ'(a_i)
        np.multiply(dc * c_prev, f * (1 - f), out=da_f)  # ∂L/∂a_f = ∂L/∂c_t ⊙ c_{t-1} ⊙ σ'(a_f)
        np.multiply(dc * i, 1 - g * g, out=da_g)        # ∂L/∂a_c = ∂L/∂c_t ⊙ i_t ⊙ tanh'(a_c)
        if self.peephole == "full":
            dhc_prev = da @ W_rec.T                     # [W_hᵀ ∂L/∂a | W_cᵀ ∂L/∂a_{i,f,c}]           (B, 2H)
            dhc_prev[:, H:] += dc * f                   # ∂L/∂c_{t-1} += ∂L/∂c_t ⊙ f_t
        else:
            dhc_prev = np.empty_like(dhc)
            np.matmul(da, W_rec.T, out=dhc_prev[:, :H])  # ∂L/∂h_{t-1} = W_hᵀ ∂L/∂a
            np.multiply(dc, f, out=dhc_prev[:, H:])     # ∂L/∂c_{t-1} = ∂L/∂c_t ⊙ f_t ...
            if self.peephole == "diagonal":
                p_c = self.params["p_c"]
                dhc_prev[:, H:] += da_i * p_c[:H] + da_f * p_c[H:]  # ... + w_ci ⊙ ∂L/∂a_i + w_cf ⊙ ∂L/∂a_f
        return dhc_prev

    def accumulate_grads(self, x, hc_prev, c, da):
        """Weight gradients of N = T·B rows at once (one GEMM per matrix, after the backward loop).

        x (N, D) inputs, hc_prev (N, 2H) [h_{t-1} | c_{t-1}], c (N, H) c_t, da (N, 4H) ∂L/∂a.
        """
        H = self.hidden_size
        g = self.grads
        g["W_x"] += x.T @ da                            # ∂L/∂W_x = Σ_t x_tᵀ ∂L/∂a_t                     (D, 4H)
        g["b"] += da.sum(axis=0)                        # ∂L/∂b = Σ_t ∂L/∂a_t
        if self.peephole == "full":
            dW_rec = hc_prev.T @ da                     # [h_{t-1} | c_{t-1}]ᵀ ∂L/∂a                      (2H, 4H)
            g["W_h"] += dW_rec[:H]
            g["W_c"] += dW_rec[H:, :3 * H]              # the c-rows of o's column are not a parameter
            g["W_co"] += c.T @ da[:, 3 * H:]            # ∂L/∂W_co = Σ_t c_tᵀ ∂L/∂a_o
        else:
            g["W_h"] += hc_prev[:, :H].T @ da           # ∂L/∂W_h = Σ_t h_{t-1}ᵀ ∂L/∂a_t
        if self.peephole == "diagonal":
            c_prev = hc_prev[:, H:]
            g["p_c"][:H] += (da[:, :H] * c_prev).sum(axis=0)        # ∂L/∂w_ci = Σ ∂L/∂a_i ⊙ c_{t-1}
            g["p_c"][H:] += (da[:, H:2 * H] * c_prev).sum(axis=0)   # ∂L/∂w_cf = Σ ∂L/∂a_f ⊙ c_{t-1}
            g["p_co"] += (da[:, 3 * H:] * c).sum(axis=0)            # ∂L/∂w_co = Σ ∂L/∂a_o ⊙ c_t

    # ----------------------------------------------------------------------------------------------
    # one step as a standalone call (for study and tests; LSTM runs the same step functions over time)
    def forward(self, x, h_prev, c_prev):
        """One step: x (B, D), h_prev (B, H), c_prev (B, H) -> h_t (B, H), c_t (B, H)."""
        x = as_float_array("x", x, self.dtype, (None, self.input_size))
        B, H = x.shape[0], self.hidden_size
        hc_prev = np.concatenate([as_float_array("h_prev", h_prev, self.dtype, (B, H)),
                                  as_float_array("c_prev", c_prev, self.dtype, (B, H))], axis=1)
        W_rec = self.recurrent_matrix()
        a = x @ self.params["W_x"] + self.params["b"]   # x_t W_x + b                                  (B, 4H)
        hc, tc = np.empty_like(hc_prev), np.empty((B, H), dtype=self.dtype)
        self.step_forward(a, hc_prev, hc, tc, W_rec)
        self._step_cache = (x, a, hc_prev, hc, tc, W_rec)
        return hc[:, :H].copy(), hc[:, H:].copy()

    def backward(self, dh, dc):
        """Backward of the last `forward`: returns dx (B, D), dh_prev (B, H), dc_prev (B, H); accumulates grads."""
        if self._step_cache is None:
            raise ValueError("backward() called before forward()")
        x, gates, hc_prev, hc, tc, W_rec = self._step_cache
        B, H = x.shape[0], self.hidden_size
        dhc = np.concatenate([as_float_array("dh", dh, self.dtype, (B, H)),
                              as_float_array("dc", dc, self.dtype, (B, H))], axis=1)
        da = np.empty_like(gates)
        dhc_prev = self.step_backward(dhc, gates, hc_prev, hc, tc, da, W_rec)
        self.accumulate_grads(x, hc_prev, hc[:, H:], da)
        dx = da @ self.params["W_x"].T                  # ∂L/∂x_t = W_xᵀ ∂L/∂a
        return dx, dhc_prev[:, :H].copy(), dhc_prev[:, H:].copy()
