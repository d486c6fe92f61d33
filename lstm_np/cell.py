"""One step of the documented peephole LSTM: forward and hand-derived backward.

The equations (docs/design.md §1), for a batch of B rows, input size D and hidden size H:

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

Why "full" runs W_h and W_c as two GEMMs per step: the c_{t-1} terms could join h_{t-1}'s GEMM as one
[h_{t-1} | c_{t-1}] (B, 2H) x (2H, 4H) product (W_c padded with a zero block for o, since o_t peeks at c_t,
which does not exist yet), and the backward likewise as ∂L/∂a (B, 4H) x (4H, 2H). Measured on this
project's machine (B = 32, H = 256, 1 and 2 threads, float32 and float64), the fused forward is 8-50%
slower (it computes the zero block and needs [h | c] copied side by side each step) and the fused backward
within ±7% of two calls, so the two-GEMM form stays.

Layout of a step: every GEMM is row-major, (B, ·) x (·, 4H), one call per matrix (the shape BLAS runs best),
while the elementwise work is GATE-MAJOR: the gates are a (4, B, H) array, block k holding gate k for the whole
batch. Why: numpy runs an elementwise operation on a contiguous block as one SIMD loop, but on a column slice
like a[:, H:2H] of a row-major (B, 4H) array it loops row by row, 2-3x slower at B = 32, and besides its GEMMs
a step is a few dozen elementwise operations. Crossing between the two layouts costs one strided operation
where it happens: `a += to_gate_major(h_{t-1} W_h)` in the forward, and the two products that write ∂L/∂a
into its row-major buffer in the backward.
"""
import numpy as np

from .checks import as_float_array, check_dtype, check_size

PEEPHOLES = ("full", "diagonal", "none")
PEEPHOLE_INITS = ("uniform", "zero")
PEEPHOLE_WEIGHTS = ("W_c", "W_co", "p_c", "p_co")   # storage names of the c-terms ("full": W_*, "diagonal": p_*)
GATES = ("i", "f", "c", "o")  # fused order along the 4H axis; "c" is the candidate c~


def _activate(z, scale, shift):
    """In place: z <- scale ⊙ tanh(scale ⊙ z) + shift, with scale and shift scalars or per-gate arrays.

    σ(z) = ½·tanh(½z) + ½ (scale = shift = ½) and tanh(z) (scale = 1, shift = 0) are the same four passes, so
    per-gate (scale, shift) activate the gates i, f, c~, o together. numpy's tanh is vectorized
    (SIMD) where scipy's expit is a scalar loop (~3x slower in float32), and the tanh form cannot overflow:
    z = ±1e4 gives exactly 1 and 0 with no warning, in float32 and float64.
    """
    z *= scale
    np.tanh(z, out=z)
    z *= scale
    z += shift


def to_gate_major(a):
    """(…, B, 4H) fused gate columns -> (…, 4, B, H) view: block k is gate k for the whole batch; writes go
    through."""
    return a.reshape(*a.shape[:-1], 4, -1).swapaxes(-2, -3)


def peephole_lr_scale(named_parameters, scale):
    """An optimizer's lr_scale giving every peephole weight among `named_parameters` (names ending in .W_c,
    .W_co, .p_c or .p_co, as LSTMCell stores them) the multiplier `scale`: {name: scale}, {} if none."""
    return {name: scale for name, _, _ in named_parameters if name.rsplit(".", 1)[-1] in PEEPHOLE_WEIGHTS}


def _at_batch(v, shape):
    """A contiguous copy of v broadcast to `shape` (see `LSTMCell.forward_weights` for why)."""
    return np.broadcast_to(v, shape).copy()


def check_peephole(peephole):
    if peephole not in PEEPHOLES:
        raise ValueError(f"peephole must be one of {PEEPHOLES}, got {peephole!r}")
    return peephole


class LSTMCell:
    """The documented peephole LSTM cell (docs/design.md §1) with fused, transposed weight storage.

    Initialization: every weight uniform in ±1/sqrt(H) (as torch.nn.LSTM), biases zero except the forget
    gate's b_f = 1.0, so the cell starts by remembering (Jozefowicz et al., 2015). peephole_init="zero" starts
    the peephole weights W_c*/w_c* at zero instead (the cell then begins as the plain LSTM and learns its
    peepholes; part of the training recipe in lstm_np.train).
    """

    def __init__(self, input_size, hidden_size, peephole="full", dtype=np.float64, seed=0, peephole_init="uniform"):
        self.input_size = D = check_size("input_size", input_size)
        self.hidden_size = H = check_size("hidden_size", hidden_size)
        self.peephole = check_peephole(peephole)
        self.dtype = check_dtype(dtype)
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(H)

        if peephole_init not in PEEPHOLE_INITS:
            raise ValueError(f"peephole_init must be one of {PEEPHOLE_INITS}, got {peephole_init!r}")

        def uniform(*shape):
            return rng.uniform(-k, k, size=shape).astype(self.dtype)

        def peephole_weights(*shape):   # drawn last: the other weights are the same whichever init
            return uniform(*shape) if peephole_init == "uniform" else np.zeros(shape, dtype=self.dtype)

        self.params = {"W_x": uniform(D, 4 * H), "W_h": uniform(H, 4 * H),
                       "b": np.zeros(4 * H, dtype=self.dtype)}
        self.params["b"][H:2 * H] = 1.0  # b_f = 1
        if peephole == "full":
            self.params["W_c"] = peephole_weights(H, 3 * H)
            self.params["W_co"] = peephole_weights(H, H)
        elif peephole == "diagonal":
            self.params["p_c"] = peephole_weights(2 * H)
            self.params["p_co"] = peephole_weights(H)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._step_cache = None
        # (scale, shift) of `_activate` per gate block: σ for i, f, o; tanh for the candidate c~
        self._gate_scale = np.array([0.5, 0.5, 1.0, 0.5], dtype=self.dtype).reshape(4, 1, 1)
        self._gate_shift = np.array([0.5, 0.5, 0.0, 0.5], dtype=self.dtype).reshape(4, 1, 1)

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
    # the step, on preallocated gate-major buffers (used by the sequence loop in lstm.py)
    def forward_weights(self, batch):
        """What a forward step reads, built once per sequence: the weights W_h (H, 4H), b as (4, 1, H) and for
        "full" W_c (H, 3H), W_co (H, H) (views, no copies); and, materialized at the batch size, the activation's
        per-gate scale and shift (4, B, H) and for "diagonal" p_c (2, B, H), p_co (B, H). Why materialize: an
        elementwise operation whose operands all have the block's shape runs as ONE contiguous loop, while
        broadcasting a per-gate or per-unit vector makes numpy loop row by row."""
        P, H = self.params, self.hidden_size
        W = {"W_h": P["W_h"], "b": P["b"].reshape(4, 1, H),
             "scale": _at_batch(self._gate_scale, (4, batch, H)), "shift": _at_batch(self._gate_shift, (4, batch, H))}
        if self.peephole == "full":
            W.update(W_c=P["W_c"], W_co=P["W_co"])
        elif self.peephole == "diagonal":
            W.update(p_c=_at_batch(P["p_c"].reshape(2, 1, H), (2, batch, H)), p_co=_at_batch(P["p_co"], (batch, H)))
        return W

    def backward_weights(self, batch):
        """What a backward step reads: W_hᵀ (4H, H) and for "full" W_cᵀ (3H, H), W_coᵀ (H, H) as C-contiguous
        copies made once per backward (the per-step GEMMs `∂L/∂a @ Wᵀ` read a contiguous Wᵀ about 1.5x faster
        than the transposed view of W); for "diagonal" p_c (2, B, H), p_co (B, H) as in `forward_weights`."""
        P, H = self.params, self.hidden_size
        W_T = {"W_h": np.ascontiguousarray(P["W_h"].T)}
        if self.peephole == "full":
            W_T.update(W_c=np.ascontiguousarray(P["W_c"].T), W_co=np.ascontiguousarray(P["W_co"].T))
        elif self.peephole == "diagonal":
            W_T.update(p_c=_at_batch(P["p_c"].reshape(2, 1, H), (2, batch, H)), p_co=_at_batch(P["p_co"], (batch, H)))
        return W_T

    def step_forward(self, a, s_prev, s, tc, W, work):
        """One step of the equations, in place.

        a       (4, B, H)  in: x_t W_x + b, gate-major; out: the activated gates i_t, f_t, c~_t, o_t
        s_prev  (2, B, H)  h_{t-1}, c_{t-1}
        s       (2, B, H)  out: h_t, c_t
        tc      (B, H)     out: tanh(c_t), kept for the backward (until then, scratch)
        W       from `forward_weights()`
        work    (B, 4H)    scratch for the GEMMs: the sequence loop passes one buffer for all steps
        """
        H = self.hidden_size
        h_prev, c_prev = s_prev
        h, c = s
        i, f, g, o = a
        np.matmul(h_prev, W["W_h"], out=work)
        a += to_gate_major(work)                        # + W_h· h_{t-1}                                  (4, B, H)
        if self.peephole == "full":
            np.matmul(c_prev, W["W_c"], out=work[:, :3 * H])
            a[:3] += to_gate_major(work)[:3]            # + W_c· c_{t-1} for i, f, c~                      (3, B, H)
        elif self.peephole == "diagonal":
            tmp = work.reshape(4, -1, H)[:2]            # (the scratch's memory as two contiguous (B, H) blocks)
            np.multiply(c_prev, W["p_c"], out=tmp)
            a[:2] += tmp                                # + w_ci ⊙ c_{t-1}, + w_cf ⊙ c_{t-1}               (2, B, H)
        # i_t = σ(a_i), f_t = σ(a_f), c~_t = tanh(a_c) and, when it has no peephole, o_t = σ(a_o)
        if self.peephole == "none":
            _activate(a, W["scale"], W["shift"])
        else:
            _activate(a[:3], W["scale"][:3], W["shift"][:3])
        np.multiply(f, c_prev, out=c)                   # c_t = f_t ⊙ c_{t-1} ...
        np.multiply(i, g, out=tc)
        c += tc                                         #       ... + i_t ⊙ c~_t                          (B, H)
        if self.peephole != "none":
            if self.peephole == "full":
                np.matmul(c, W["W_co"], out=tc)         # W_co c_t  (the new cell)                        (B, H)
            else:
                np.multiply(c, W["p_co"], out=tc)       # w_co ⊙ c_t
            o += tc
            _activate(o, 0.5, 0.5)                      # o_t = σ(W_xo x_t + W_ho h_{t-1} + W_co c_t + b_o)
        np.tanh(c, out=tc)                              # tanh(c_t)                                       (B, H)
        np.multiply(o, tc, out=h)                       # h_t = o_t ⊙ tanh(c_t)                           (B, H)

    @staticmethod
    def local_derivatives(gates, c_prev, tc, K, k_c):
        """The factors of ∂L/∂a that depend on forward values only, for one step (gates (4, B, H)) or for
        all T steps at once (gates (4, T, B, H)) before the backward loop:

        gates (4, …) i, f, c~, o;  c_prev (…) c_{t-1};  tc (…) tanh(c_t)
        K     (4, …) out: c~_t ⊙ σ'(a_i),  c_{t-1} ⊙ σ'(a_f),  i_t ⊙ tanh'(a_c),  tanh(c_t) ⊙ σ'(a_o)
        k_c   (…)    out: o_t ⊙ tanh'(c_t)
        With them a backward step is a few products with the upstream gradients (`step_backward`).
        """
        i, _, g, o = gates
        K_i, K_f, K_g, K_o = K
        np.subtract(1, gates, out=K)
        K *= gates                                      # σ'(a) = s ⊙ (1 - s) for i, f, o (c~ is next)
        np.multiply(g, g, out=K_g)
        np.subtract(1, K_g, out=K_g)                    # tanh'(a_c) = 1 - c~_t²
        K_i *= g                                        # c~_t ⊙ σ'(a_i)
        K_f *= c_prev                                   # c_{t-1} ⊙ σ'(a_f)
        K_g *= i                                        # i_t ⊙ tanh'(a_c)
        K_o *= tc                                       # tanh(c_t) ⊙ σ'(a_o)
        np.multiply(tc, tc, out=k_c)
        np.subtract(1, k_c, out=k_c)
        k_c *= o                                        # o_t ⊙ tanh'(c_t)

    def step_backward(self, ds, K, k_c, f, W_T, ds_prev, da, work):
        """Backward of one step.

        ds       (2, B, H)  ∂L/∂h_t, ∂L/∂c_t from everything after this step (read only)
        K, k_c   (4, B, H), (B, H) from `local_derivatives`;  f (B, H) the forget gate f_t
        W_T      from `backward_weights()`
        ds_prev  (2, B, H)  out: ∂L/∂h_{t-1}, ∂L/∂c_{t-1}
        da       (B, 4H)    out: ∂L/∂a (gate pre-activations), row-major for the GEMMs here and after the loop
        work     (2, B, H)  scratch
        """
        H = self.hidden_size
        dh, dc_next = ds
        dh_prev, dc = ds_prev       # ∂L/∂c_t is built in the slot of ∂L/∂c_{t-1}: ⊙ f_t below makes it that
        da_g = to_gate_major(da)
        tmp = work[0]
        np.multiply(K[3], dh, out=da_g[3])              # ∂L/∂a_o = ∂L/∂h_t ⊙ tanh(c_t) ⊙ σ'(a_o)          (B, H)
        np.multiply(dh, k_c, out=dc)
        dc += dc_next                                   # ∂L/∂c_t = ∂L/∂c_t(next) + ∂L/∂h_t ⊙ o_t ⊙ tanh'(c_t) ...
        if self.peephole == "full":
            np.matmul(da[:, 3 * H:], W_T["W_co"], out=tmp)
            dc += tmp                                   #          ... + W_coᵀ ∂L/∂a_o  (o_t peeks at c_t)
        elif self.peephole == "diagonal":
            np.multiply(da_g[3], W_T["p_co"], out=tmp)
            dc += tmp                                   #          ... + w_co ⊙ ∂L/∂a_o
        # ∂L/∂a_i = ∂L/∂c_t ⊙ c~_t ⊙ σ'(a_i),  ∂L/∂a_f = ∂L/∂c_t ⊙ c_{t-1} ⊙ σ'(a_f),
        # ∂L/∂a_c = ∂L/∂c_t ⊙ i_t ⊙ tanh'(a_c)
        np.multiply(K[:3], dc, out=da_g[:3])            #                                                  (3, B, H)
        np.matmul(da, W_T["W_h"], out=dh_prev)          # ∂L/∂h_{t-1} = W_hᵀ ∂L/∂a                         (B, H)
        dc *= f                                         # ∂L/∂c_{t-1} = ∂L/∂c_t ⊙ f_t ...
        if self.peephole == "full":
            np.matmul(da[:, :3 * H], W_T["W_c"], out=tmp)
            dc += tmp                                   #  ... + W_cᵀ ∂L/∂a_{i,f,c}
        elif self.peephole == "diagonal":
            np.multiply(da_g[:2], W_T["p_c"], out=work)
            dc += work[0]                               #  ... + w_ci ⊙ ∂L/∂a_i
            dc += work[1]                               #  ... + w_cf ⊙ ∂L/∂a_f

    def accumulate_grads(self, x, h_prev, c_prev, c, da):
        """Weight gradients of N = T·B rows at once (one GEMM per matrix, after the backward loop).

        x (N, D) inputs, h_prev, c_prev (N, H) h_{t-1}, c_{t-1}, c (N, H) c_t, da (N, 4H) ∂L/∂a in the fused
        column order of the weights (row-major, as the GEMMs want it). An x of fewer columns than input_size
        feeds the first rows of W_x only (an LSTM's `static` input feeds the others: lstm.py).
        """
        H = self.hidden_size
        g = self.grads
        g["W_x"][:x.shape[1]] += x.T @ da               # ∂L/∂W_x = Σ_t x_tᵀ ∂L/∂a_t (the rows x feeds)   (D, 4H)
        g["W_h"] += h_prev.T @ da                       # ∂L/∂W_h = Σ_t h_{t-1}ᵀ ∂L/∂a_t                 (H, 4H)
        g["b"] += da.sum(axis=0)                        # ∂L/∂b = Σ_t ∂L/∂a_t
        if self.peephole == "full":
            g["W_c"] += c_prev.T @ da[:, :3 * H]        # ∂L/∂W_c = Σ_t c_{t-1}ᵀ ∂L/∂a_{i,f,c}           (H, 3H)
            g["W_co"] += c.T @ da[:, 3 * H:]            # ∂L/∂W_co = Σ_t c_tᵀ ∂L/∂a_o                     (H, H)
        elif self.peephole == "diagonal":
            g["p_c"][:H] += (da[:, :H] * c_prev).sum(axis=0)        # ∂L/∂w_ci = Σ ∂L/∂a_i ⊙ c_{t-1}
            g["p_c"][H:] += (da[:, H:2 * H] * c_prev).sum(axis=0)   # ∂L/∂w_cf = Σ ∂L/∂a_f ⊙ c_{t-1}
            g["p_co"] += (da[:, 3 * H:] * c).sum(axis=0)            # ∂L/∂w_co = Σ ∂L/∂a_o ⊙ c_t

    # ----------------------------------------------------------------------------------------------
    # one step as a standalone call (for study and tests; LSTM runs the same step functions over time)
    def forward(self, x, h_prev, c_prev):
        """One step: x (B, D), h_prev (B, H), c_prev (B, H) -> h_t (B, H), c_t (B, H)."""
        x = as_float_array("x", x, self.dtype, (None, self.input_size))
        B, H = x.shape[0], self.hidden_size
        s_prev = np.stack([as_float_array("h_prev", h_prev, self.dtype, (B, H)),
                           as_float_array("c_prev", c_prev, self.dtype, (B, H))])
        W = self.forward_weights(B)
        a = to_gate_major(x @ self.params["W_x"]) + W["b"]   # x_t W_x + b                                (4, B, H)
        s, tc = np.empty_like(s_prev), np.empty((B, H), dtype=self.dtype)
        self.step_forward(a, s_prev, s, tc, W, np.empty((B, 4 * H), dtype=self.dtype))
        self._step_cache = (x, a, s_prev, s, tc)
        return s[0].copy(), s[1].copy()

    def backward(self, dh, dc):
        """Backward of the last `forward`: returns dx (B, D), dh_prev (B, H), dc_prev (B, H); accumulates grads."""
        if self._step_cache is None:
            raise ValueError("backward() called before forward()")
        x, gates, s_prev, s, tc = self._step_cache
        B, H = x.shape[0], self.hidden_size
        ds = np.stack([as_float_array("dh", dh, self.dtype, (B, H)), as_float_array("dc", dc, self.dtype, (B, H))])
        K, k_c = np.empty_like(gates), np.empty_like(tc)
        self.local_derivatives(gates, s_prev[1], tc, K, k_c)
        ds_prev, da = np.empty_like(ds), np.empty((B, 4 * H), dtype=self.dtype)
        self.step_backward(ds, K, k_c, gates[1], self.backward_weights(B), ds_prev, da, np.empty_like(ds))
        self.accumulate_grads(x, s_prev[0], s_prev[1], s[1], da)
        dx = da @ self.params["W_x"].T                  # ∂L/∂x_t = W_xᵀ ∂L/∂a
        return dx, ds_prev[0], ds_prev[1]
