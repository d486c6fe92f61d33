"""The peephole LSTM cell unrolled over time: BPTT, masking, stacked layers, two directions, dropout.

Time-major throughout: x is (T, B, D). For each layer and direction the loop is

    forward:  A = X W_x + b for all T steps in ONE GEMM, stored gate-major               (T, 4, B, H)
              for t = 0..T-1: cell.step_forward(A[t], S[:, t] -> S[:, t+1])     one (B, H) x (H, 4H) GEMM per step
    backward: the local derivatives of all T steps at once, then
              for t = T-1..0: cell.step_backward(...) -> dA[t], ∂L/∂h_{t-1}, ∂L/∂c_{t-1}
              ∂L/∂W_x, ∂L/∂W_h, ... and ∂L/∂X = dA W_xᵀ as ONE GEMM each over all T·B rows

Everything a step needs for its backward lives in three preallocated arrays per layer and direction (no
per-step Python lists), laid out as the step wants them (see cell.py) so that each step's blocks are
contiguous: A (T, 4, B, H) the activated gates (gate-major), S (2, T+1, B, H) the states h_t (S[0]) and c_t
(S[1]), TC (T, B, H) tanh(c_t). S[0, 1:] is y, and S[0, :-1], S[1, :-1] are the (T·B, H) left operands of the
weight GEMMs.

Variable-length batches (`lengths`, the semantics of packed sequences): at steps t >= lengths[b] row b's
(h, c) are carried unchanged, its output is zero and no gradient flows through the step; h_n, c_n are the
states after its last real step. The reverse direction reads each sequence from its own last real step:
its input is gathered with `rev[t, b] = lengths[b] - 1 - t` (t < lengths[b]), an index map that is its own
inverse, so the same gather puts its outputs back in place.

An input that is the same at every step (`static`, (B, Ds): a peeky decoder's encoder summary) is read by the
first layer as if concatenated to every x_t, x'_t = [x_t ; static], with W_x = [W_x,x ; W_x,s] split by rows to
match. Its projection static W_x,s is the same for all T steps, so it is computed once and broadcast, not T
times inside the GEMM above; the backward sums ∂L/∂a over the steps first for the same reason:

    ∂L/∂W_x,s = staticᵀ Σ_t ∂L/∂a_t        ∂L/∂static = (Σ_t ∂L/∂a_t) W_x,sᵀ        (one (B, 4H) sum, two GEMMs)

What the last forward computed at each step (the gates i_t, f_t, o_t, c~_t and the states c_t, h_t) can be
read back with `step_values(layer, direction)`: views of the arrays A and S above, which the backward keeps
anyway, so inspecting a model costs nothing when nobody asks.
"""
import numpy as np

from .cell import GATES, LSTMCell, check_peephole, to_gate_major
from .checks import as_float_array, check_dtype, check_int, check_number, check_size
from .functional import dropout_mask

DIRECTIONS = ("fwd", "bwd")


class LSTM:
    """A stack of peephole LSTM layers over time-major sequences (the interface of torch.nn.LSTM).

    forward(x (T, B, input_size), h0, c0 (num_layers*num_directions, B, H), lengths (B,))
        -> y (T, B, num_directions*H), (h_n, c_n) (num_layers*num_directions, B, H)
    backward(dy, dh_n, dc_n) -> dx, (dh0, dc0), accumulating parameter gradients until zero_grad().
    forward(x (T, B, input_size - Ds), ..., static=s (B, Ds)) reads [x_t ; s] at every step (module docstring);
    its backward also sets `d_static`, ∂L/∂s (B, Ds) (None after a forward without one).

    State index k = layer * num_directions + direction, as in torch. Dropout (inverted, seeded) is applied
    to the input of every layer but the first, in training mode only (`train()` / `eval()`).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, peephole="full", bidirectional=False,
                 dropout=0.0, dtype=np.float64, seed=0, peephole_init="uniform"):
        self.num_layers = check_size("num_layers", num_layers)
        check_number("dropout", dropout, 0, 1, high_inclusive=False)
        if not isinstance(bidirectional, (bool, np.bool_)):
            raise TypeError(f"bidirectional must be True or False, got {bidirectional!r}")
        self.peephole = check_peephole(peephole)
        self.dtype = check_dtype(dtype)
        self.num_directions = 2 if bidirectional else 1
        self.bidirectional = bool(bidirectional)
        self.dropout = float(dropout)
        seeds = np.random.SeedSequence(seed).spawn(self.num_layers * self.num_directions + 1)
        self._cells = []
        for layer in range(self.num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            for d in range(self.num_directions):
                self._cells.append(LSTMCell(layer_in, hidden_size, peephole, self.dtype, peephole_init=peephole_init,
                                            seed=seeds[layer * self.num_directions + d]))
        self.input_size = self._cells[0].input_size
        self.hidden_size = self._cells[0].hidden_size
        self.rng = np.random.default_rng(seeds[-1])  # dropout masks
        self.batch_rows = None   # (lo, hi, B_all): the rows of a larger batch forward() gets (functional.dropout_mask)
        self.training = True
        self._cache = None
        self.d_static = None

    # ----------------------------------------------------------------------------------------------
    def cell(self, layer=0, direction=0):
        """The LSTMCell holding the weights of that layer and direction (0 forward, 1 reverse)."""
        layer = check_int("layer", layer, 0, self.num_layers - 1)
        direction = check_int("direction", direction, 0, self.num_directions - 1)
        return self._cells[layer * self.num_directions + direction]

    def named_parameters(self):
        """[(name, value, grad), ...], names like "l0.fwd.W_x"; values are updated in place by optimizers."""
        out = []
        for k, cell in enumerate(self._cells):
            layer, d = divmod(k, self.num_directions)
            out += cell.named_parameters(prefix=f"l{layer}.{DIRECTIONS[d]}.")
        return out

    def zero_grad(self):
        for cell in self._cells:
            cell.zero_grad()

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    # ----------------------------------------------------------------------------------------------
    def _check_lengths(self, lengths, T, B):
        if lengths is None:
            return None
        lengths = np.asarray(lengths)
        if lengths.dtype.kind not in "iu":
            raise TypeError(f"lengths must be an integer array, got dtype {lengths.dtype}")
        if lengths.shape != (B,):
            raise ValueError(f"lengths must have shape ({B},) (one length per batch row), got {lengths.shape}")
        if lengths.min() < 1 or lengths.max() > T:
            raise ValueError(f"lengths must lie in [1, {T}] (T = x.shape[0]), got min {lengths.min()} "
                             f"and max {lengths.max()}")
        if (lengths == T).all():
            return None  # no padding: identical semantics, skip the masking work
        return lengths.astype(np.int64)

    def forward(self, x, h0=None, c0=None, lengths=None, static=None):
        """Run the stack over x (T, B, input_size), or x (T, B, input_size - Ds) and static (B, Ds) read at every
        step; returns y, (h_n, c_n). See the class and module docstrings."""
        # The previous call's cache is dead from here: freed before this call allocates its own, and a call
        # that fails validation leaves nothing behind that backward() could silently differentiate instead.
        self._cache = self.d_static = None
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"x must be a 3-D array (T, B, input_size), got shape {x.shape}")
        D = self.input_size
        if static is not None:
            static = as_float_array("static", static, self.dtype, (x.shape[1], None))
            if not 0 < static.shape[1] < D:
                raise ValueError(f"static must have between 1 and {D - 1} features (input_size is {D}, shared "
                                 f"with x), got shape {static.shape}")
            D -= static.shape[1]
        x = as_float_array("x", x, self.dtype, (None, None, D))
        T, B, _ = x.shape
        if T == 0 or B == 0:
            raise ValueError(f"x must have at least one time step and one batch row, got shape {x.shape}")
        H, L, nd = self.hidden_size, self.num_layers, self.num_directions
        state_shape = (L * nd, B, H)
        h0 = np.zeros(state_shape, self.dtype) if h0 is None else as_float_array("h0", h0, self.dtype, state_shape)
        c0 = np.zeros(state_shape, self.dtype) if c0 is None else as_float_array("c0", c0, self.dtype, state_shape)
        lengths = self._check_lengths(lengths, T, B)
        mask = None if lengths is None else np.arange(T)[:, None] < lengths[None, :]       # (T, B) real steps
        rev = np.arange(T)[:, None].repeat(B, axis=1)                                     # (T, B)
        if lengths is not None:
            rev = np.where(mask, lengths[None, :] - 1 - np.arange(T)[:, None], rev)
        else:
            rev = rev[::-1]
        cols = np.arange(B)[None, :]

        h_n, c_n = np.empty(state_shape, self.dtype), np.empty(state_shape, self.dtype)
        caches, drop_masks = [], []
        layer_in = x
        for layer in range(L):
            if layer > 0 and self.training and self.dropout > 0:
                drop = dropout_mask(self.rng, layer_in.shape, self.dropout, self.dtype, self.batch_rows)
                layer_in = layer_in * drop
                drop_masks.append(drop)
            else:
                drop_masks.append(None)
            outs = []
            for d in range(nd):
                k = layer * nd + d
                xin = layer_in if d == 0 else layer_in[rev, cols]
                y_d, (h_n[k], c_n[k]), cache = self._forward_one(self._cells[k], xin, h0[k], c0[k], mask,
                                                                 static if layer == 0 else None)
                outs.append(y_d if d == 0 else y_d[rev, cols])
                caches.append(cache)
            layer_in = outs[0] if nd == 1 else np.concatenate(outs, axis=2)
        self._cache = (caches, drop_masks, mask, rev, cols, (T, B), static)
        return layer_in, (h_n, c_n)

    def _forward_one(self, cell, x, h0, c0, mask, static=None):
        """One layer, one direction: x (T, B, D), h0, c0 (B, H), static (B, Ds) or None
        -> y (T, B, H), (h_T, c_T), cache."""
        T, B, D = x.shape
        H = cell.hidden_size
        W = cell.forward_weights(B)
        A = np.empty((T, 4, B, H), dtype=cell.dtype)                         # the gates of every step
        XW = (x.reshape(T * B, D) @ cell.params["W_x"][:D]).reshape(T, B, 4 * H)  # x_t W_x, all steps in one GEMM
        if static is not None:
            XW += static @ cell.params["W_x"][D:]                             # + static W_x,s, once for all t
        np.add(to_gate_major(XW), W["b"], out=A)                              # + b, gate-major    (T, 4, B, H)
        del XW                                                                # (4 values per unit: free it now)
        S = np.empty((2, T + 1, B, H), dtype=cell.dtype)                      # h_t, c_t; S[:, 0] = initial
        S[0, 0], S[1, 0] = h0, c0
        TC = np.empty((T, B, H), dtype=cell.dtype)                            # tanh(c_t)
        work = np.empty((B, 4 * H), dtype=cell.dtype)                         # the steps' GEMM scratch
        for t in range(T):
            cell.step_forward(A[t], S[:, t], S[:, t + 1], TC[t], W, work)
            if mask is not None:
                pad = ~mask[t]
                S[:, t + 1, pad] = S[:, t, pad]                               # padded rows carry (h, c)
        y = S[0, 1:].copy()                                                   # (T, B, H)
        if mask is not None:
            y *= mask[:, :, None]                                             # padded outputs are zero
        return y, (S[0, T], S[1, T]), (x, A, S, TC)

    def step_values(self, layer=0, direction=0):
        """What the last forward computed at every step of one layer and direction:

            {"i": i_t, "f": f_t, "o": o_t, "c_tilde": c~_t, "c": c_t, "h": h_t}    each (T, B, H)

        read from the arrays the backward uses (no recomputation, nothing stored for it), as read-only views:
        they stay valid after later forwards, which allocate new arrays. Step t is the layer's t-th step in
        its own reading order: for the reverse direction (direction=1) that is position lengths[b] - 1 - t.
        At steps t >= lengths[b] (padding) h_t and c_t are the carried states and the gates were computed
        and discarded: ignore them. ValueError if there was no completed forward.
        """
        self.cell(layer, direction)                                           # checks layer and direction
        if self._cache is None:
            raise ValueError("step_values() needs a completed forward() (there was none yet, or the last one "
                             "raised)")
        _, A, S, _ = self._cache[0][layer * self.num_directions + direction]
        gate = {g: A[:, k] for k, g in enumerate(GATES)}                      # activated gates   (T, B, H) each
        values = {"i": gate["i"], "f": gate["f"], "o": gate["o"], "c_tilde": gate["c"],
                  "c": S[1, 1:], "h": S[0, 1:]}                               # S[:, 0] is (h_0, c_0)
        for v in values.values():
            v.flags.writeable = False                                         # the backward still reads them
        return values

    # ----------------------------------------------------------------------------------------------
    def backward(self, dy, dh_n=None, dc_n=None):
        """BPTT for the last forward: dy (T, B, num_directions*H), dh_n, dc_n (num_layers*num_directions, B, H)
        -> dx (T, B, input_size), or (T, B, input_size - Ds) after a forward with a static input, whose gradient
        (B, Ds) goes to `self.d_static`; (dh0, dc0). Parameter gradients are accumulated (+=)."""
        if self._cache is None:
            raise ValueError("backward() needs a completed forward() to differentiate (there was none yet, "
                             "or the last one raised)")
        caches, drop_masks, mask, rev, cols, (T, B), static = self._cache
        H, L, nd = self.hidden_size, self.num_layers, self.num_directions
        state_shape = (L * nd, B, H)
        self.d_static = None
        dy = as_float_array("dy", dy, self.dtype, (T, B, nd * H))
        dh_n = np.zeros(state_shape, self.dtype) if dh_n is None else as_float_array("dh_n", dh_n, self.dtype, state_shape)
        dc_n = np.zeros(state_shape, self.dtype) if dc_n is None else as_float_array("dc_n", dc_n, self.dtype, state_shape)
        dh0, dc0 = np.empty(state_shape, self.dtype), np.empty(state_shape, self.dtype)
        d_out = dy
        for layer in reversed(range(L)):
            d_in = None
            for d in range(nd):
                k = layer * nd + d
                dy_d = d_out[:, :, d * H:(d + 1) * H]
                if d == 1:
                    dy_d = dy_d[rev, cols]
                dx_d, (dh0[k], dc0[k]), ds_d = self._backward_one(self._cells[k], dy_d, dh_n[k], dc_n[k],
                                                                  caches[k], mask, static if layer == 0 else None)
                if ds_d is not None:
                    self.d_static = ds_d if self.d_static is None else self.d_static + ds_d
                if d == 1:
                    dx_d = dx_d[rev, cols]
                d_in = dx_d if d_in is None else d_in + dx_d
            if drop_masks[layer] is not None:
                d_in *= drop_masks[layer]                                     # ∂(x ⊙ m)/∂x = m
            d_out = d_in
        return d_out, (dh0, dc0)

    def _backward_one(self, cell, dy, dh_T, dc_T, cache, mask, static=None):
        """One layer, one direction: dy (T, B, H), dh_T, dc_T (B, H), the forward's static (B, Ds) or None
        -> dx (T, B, D), (∂L/∂h_0, ∂L/∂c_0), ∂L/∂static (B, Ds) or None."""
        x, A, S, TC = cache
        T, B, D = x.shape
        H = cell.hidden_size
        W_T = cell.backward_weights(B)
        K = np.empty_like(A)                                                  # (T, 4, B, H)
        K_c = np.empty_like(TC)
        # the factors of ∂L/∂a that need no upstream gradient, for all T steps at once: the loop below
        # only multiplies them in (a handful of array operations per step instead of ~25)
        cell.local_derivatives(A.swapaxes(0, 1), S[1, :-1], TC, K.swapaxes(0, 1), K_c)
        if mask is not None:
            dy = dy * mask[:, :, None]                                        # padded outputs were zeros
        dA = np.empty((T, B, 4 * H), dtype=cell.dtype)                        # ∂L/∂a of every step, row-major
        ds = np.stack([dh_T, dc_T])                                           # running ∂L/∂h_t, ∂L/∂c_t (2, B, H)
        ds_prev, work = np.empty_like(ds), np.empty_like(ds)
        for t in reversed(range(T)):
            ds[0] += dy[t]                                                    # ∂L/∂h_t += output gradient
            cell.step_backward(ds, K[t], K_c[t], A[t, 1], W_T, ds_prev, dA[t], work)
            if mask is not None:
                pad = ~mask[t]
                dA[t, pad] = 0                                                # no gradient through padded steps
                ds_prev[:, pad] = ds[:, pad]                                  # the carried state passes it on
            ds, ds_prev = ds_prev, ds                                         # two buffers, swapped every step
        N = T * B
        dA = dA.reshape(N, 4 * H)
        cell.accumulate_grads(x.reshape(N, D), S[0, :-1].reshape(N, H), S[1, :-1].reshape(N, H),
                              S[1, 1:].reshape(N, H), dA)
        dx = (dA @ cell.params["W_x"][:D].T).reshape(T, B, D)                 # ∂L/∂x_t = dA_t W_xᵀ, one GEMM
        d_static = None
        if static is not None:
            dA_sum = dA.reshape(T, B, 4 * H).sum(axis=0)                      # Σ_t ∂L/∂a_t                (B, 4H)
            cell.grads["W_x"][D:] += static.T @ dA_sum                        # ∂L/∂W_x,s = staticᵀ Σ_t ∂L/∂a_t
            d_static = dA_sum @ cell.params["W_x"][D:].T                      # ∂L/∂static = (Σ_t ∂L/∂a_t) W_x,sᵀ
        return dx, (ds[0], ds[1]), d_static
