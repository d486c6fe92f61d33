"""Attention over the encoder's outputs, with hand-written backward: Luong (dot, general) and Bahdanau (additive).

For decoder states q_t (the query) and encoder outputs k_s (the keys, also the values), s over real source
positions only:

    dot       score(t, s) = q_t · k_s                         (Luong et al., 2015)
    general   score(t, s) = q_t W_a k_s                       (Luong et al., 2015)
    additive  score(t, s) = v_a · tanh(W_q q_t + W_k k_s)     (Bahdanau et al., 2015)
    α_t = softmax_s(score(t, ·)),   padded s get α = 0 exactly
    ctx_t = Σ_s α_{t,s} k_s

The query is the decoder's current top-layer state h_t (Luong's architecture for all three scores), so the
attention of every target step is computed at once after the decoder LSTM has run: batched over time.

Layout inside: batch-first (B, T, Hq) queries, (B, S, Hk) keys, so scores are one batched GEMM (B, T, S).
"""
import numpy as np

from .checks import check_dtype, check_size
from .functional import softmax

ATTENTIONS = ("luong", "luong-general", "bahdanau")


def check_attention(name):
    if name is not None and name not in ATTENTIONS:
        raise ValueError(f"attention must be None or one of {ATTENTIONS}, got {name!r}")
    return name


class Attention:
    """score → masked softmax → context. forward(q (B,T,H), k (B,S,H), mask (B,S)) -> ctx (B,T,H), α (B,T,S)."""

    def __init__(self, kind, size, dtype=np.float32, seed=0, attn_size=None):
        if kind not in ATTENTIONS:   # None is Seq2Seq's "no attention", not a kind of this layer
            raise ValueError(f"kind must be one of {ATTENTIONS}, got {kind!r}")
        self.kind = kind
        self.size = size = check_size("size", size)
        dtype = check_dtype(dtype)
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(size)
        self.params = {}
        if kind == "luong-general":
            self.params["W_a"] = np.eye(size, dtype=dtype) + rng.uniform(-k, k, (size, size)).astype(dtype)
        elif kind == "bahdanau":
            A = size if attn_size is None else check_size("attn_size", attn_size)
            self.params["W_q"] = rng.uniform(-k, k, (size, A)).astype(dtype)
            self.params["W_k"] = rng.uniform(-k, k, (size, A)).astype(dtype)
            self.params["v_a"] = rng.uniform(-1 / np.sqrt(A), 1 / np.sqrt(A), A).astype(dtype)
        self.grads = {n: np.zeros_like(p) for n, p in self.params.items()}
        self._cache = None

    def named_parameters(self, prefix=""):
        return [(prefix + n, p, self.grads[n]) for n, p in self.params.items()]

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0)

    def _check_inputs(self, q, k, mask):
        """Shapes, dtypes and a real position per row, checked here so that a mistake is a ValueError/TypeError
        naming the argument instead of a broadcast error or, for an all-padding row, NaN weights."""
        q, k, mask = np.asarray(q), np.asarray(k), np.asarray(mask)
        for name, a in (("q", q), ("k", k)):
            if a.dtype.kind != "f":
                raise TypeError(f"{name} must be a floating array, got dtype {a.dtype}")
            if a.ndim != 3 or a.shape[2] != self.size:
                raise ValueError(f"{name} must have shape (B, {'T' if name == 'q' else 'S'}, {self.size}), "
                                 f"got {a.shape}")
        if k.shape[0] != q.shape[0]:
            raise ValueError(f"k must have the batch size of q ({q.shape[0]}), got shape {k.shape}")
        if mask.dtype != bool:
            raise TypeError(f"mask must be a boolean array (True at real source positions), got dtype {mask.dtype}")
        if mask.shape != k.shape[:2]:
            raise ValueError(f"mask must have shape {k.shape[:2]} (B, S) like k, got {mask.shape}")
        if not mask.any(axis=1).all():
            raise ValueError("mask must have at least one True (real) position in every row: attention over "
                             "an empty source is undefined")
        return q, k, mask

    def forward(self, q, k, mask):
        """q (B, T, H) queries, k (B, S, H) keys/values, mask (B, S) True at real source positions."""
        q, k, mask = self._check_inputs(q, k, mask)
        cache = {"q": q, "k": k}
        if self.kind == "luong":
            score = q @ k.transpose(0, 2, 1)                           # q_t · k_s                    (B, T, S)
        elif self.kind == "luong-general":
            qW = q @ self.params["W_a"]                                # q_t W_a                      (B, T, H)
            score = qW @ k.transpose(0, 2, 1)                          # q_t W_a k_s                  (B, T, S)
            cache["qW"] = qW
        else:
            e = np.tanh((q @ self.params["W_q"])[:, :, None, :]
                        + (k @ self.params["W_k"])[:, None, :, :])     # tanh(W_q q_t + W_k k_s)      (B, T, S, A)
            score = e @ self.params["v_a"]                             # v_a · e                      (B, T, S)
            cache["e"] = e
        score = np.where(mask[:, None, :], score, -np.inf)             # padded positions can't be chosen
        alpha = softmax(score, axis=2)                                 # α_t = softmax_s(score), 0 on padding (B, T, S)
        ctx = alpha @ k                                                # ctx_t = Σ_s α_{t,s} k_s       (B, T, H)
        cache["alpha"] = alpha
        self._cache = cache
        return ctx, alpha

    def backward(self, dctx):
        """dctx (B, T, H) -> dq (B, T, H), dk (B, S, H); accumulates parameter gradients."""
        if self._cache is None:
            raise RuntimeError("Attention.backward called before forward")
        c = self._cache
        q, k, alpha = c["q"], c["k"], c["alpha"]
        dctx = np.asarray(dctx)
        if dctx.shape != q.shape:
            raise ValueError(f"dctx must have shape {q.shape} (B, T, H) like the forward's q, got {dctx.shape}")
        dalpha = dctx @ k.transpose(0, 2, 1)                           # ∂L/∂α_{t,s} = ∂L/∂ctx_t · k_s  (B, T, S)
        dk = alpha.transpose(0, 2, 1) @ dctx                           # ∂L/∂k_s = Σ_t α_{t,s} ∂L/∂ctx_t (value path)
        dscore = alpha * (dalpha - (alpha * dalpha).sum(axis=2, keepdims=True))  # softmax backward (0 on padding)
        if self.kind == "luong":
            dq = dscore @ k                                            # ∂L/∂q_t = Σ_s ∂L/∂score k_s
            dk += dscore.transpose(0, 2, 1) @ q                        # ∂L/∂k_s += Σ_t ∂L/∂score q_t
        elif self.kind == "luong-general":
            W, qW = self.params["W_a"], c["qW"]
            dqW = dscore @ k                                           # ∂L/∂(q W_a)                    (B, T, H)
            dk += dscore.transpose(0, 2, 1) @ qW                       # ∂L/∂k_s += Σ_t ∂L/∂score (q_t W_a)
            self.grads["W_a"] += q.reshape(-1, q.shape[2]).T @ dqW.reshape(-1, dqW.shape[2])  # Σ q_tᵀ ∂L/∂(qW)
            dq = dqW @ W.T                                             # ∂L/∂q = ∂L/∂(q W_a) W_aᵀ
        else:
            e, v = c["e"], self.params["v_a"]
            self.grads["v_a"] += np.einsum("bts,btsa->a", dscore, e)   # ∂L/∂v_a = Σ ∂L/∂score e
            de = dscore[..., None] * v * (1 - e * e)                   # ∂L/∂(W_q q + W_k k) through tanh (B, T, S, A)
            dqW, dkW = de.sum(axis=2), de.sum(axis=1)                  # (B, T, A), (B, S, A)
            A = v.shape[0]
            self.grads["W_q"] += q.reshape(-1, q.shape[2]).T @ dqW.reshape(-1, A)
            self.grads["W_k"] += k.reshape(-1, k.shape[2]).T @ dkW.reshape(-1, A)
            dq = dqW @ self.params["W_q"].T
            dk += dkW @ self.params["W_k"].T
        return dq, dk
