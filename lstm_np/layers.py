"""Embedding and Linear: the two parameterised layers around the LSTM.

Each layer keeps the cache of its last forward: `y = layer.forward(x)`, then `dx = layer.backward(dy)`
returns the input gradient and ACCUMULATES (+=) the parameter gradients; `zero_grad()` clears them.
"""

import numpy as np

from .checks import check_dtype, check_int, check_size

__all__ = ["Embedding", "Linear"]


class Embedding:
    """Lookup table: row ids[...] of W.

    forward:  y[..., :] = W[ids[...], :]                 ids (...) int in [0, V)  ->  y (..., E)
    backward: ∂L/∂W[v] += Σ_{positions with ids == v} ∂L/∂y[pos]

    W is initialised N(0, 1)·0.1: small, so the first LSTM pre-activations sit in the linear part of σ and
    tanh. Row `padding_idx` (if given) starts at zero and never receives a gradient, so it stays zero.
    """

    def __init__(self, num_embeddings, embedding_dim, dtype=np.float32, seed=0, padding_idx=None):
        self.num_embeddings = check_size("num_embeddings", num_embeddings)
        self.embedding_dim = check_size("embedding_dim", embedding_dim)
        dtype = check_dtype(dtype)
        self.padding_idx = None if padding_idx is None else check_int("padding_idx", padding_idx, 0,
                                                                      self.num_embeddings - 1)
        rng = np.random.default_rng(seed)
        # Drawn in float64 and then cast, so float32 and float64 layers with one seed hold the same numbers.
        self.W = (0.1 * rng.standard_normal((self.num_embeddings, self.embedding_dim))).astype(dtype)  # (V, E)
        if self.padding_idx is not None:
            self.W[self.padding_idx] = 0
        self.dW = np.zeros_like(self.W)  # (V, E)
        self._ids = None

    def forward(self, ids):
        """ids (...) integer array with values in [0, V)  ->  (..., E) rows of W."""
        ids = np.asarray(ids)
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"ids must be an integer array, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise ValueError(
                f"ids must be in [0, {self.num_embeddings}), got values in [{ids.min()}, {ids.max()}]"
            )
        self._ids = ids
        return self.W[ids]  # (..., E)

    def backward(self, dout):
        """dout (..., E) = ∂L/∂y  ->  None (ids are not differentiable); accumulates into dW."""
        if self._ids is None:
            raise RuntimeError("Embedding.backward called before forward")
        ids = self._ids
        dout = np.asarray(dout)
        if dout.shape != ids.shape + (self.embedding_dim,):
            raise ValueError(f"dout must have shape {ids.shape + (self.embedding_dim,)}, got {dout.shape}")
        ids = ids.reshape(-1)                          # (N,)
        dout = dout.reshape(-1, self.embedding_dim)    # (N, E)
        if self.padding_idx is not None:
            keep = ids != self.padding_idx
            ids, dout = ids[keep], dout[keep]
        # Scatter-add: repeated ids must SUM (a fancy-indexed `dW[ids] += dout` would keep only the last).
        # np.add.at is unbuffered, deterministic, and has had a fast path since numpy 1.25.
        np.add.at(self.dW, ids, dout)  # ∂L/∂W[v] += Σ_{n: ids[n]=v} dout[n]
        return None

    def named_parameters(self):
        return [("weight", self.W, self.dW)]

    def zero_grad(self):
        self.dW[...] = 0


class Linear:
    """Affine map on the last axis:  y = x W + b,   x (..., D_in)  ->  y (..., D_out).

    W is stored (D_in, D_out) so the forward is one GEMM with no transpose; W and b are initialised
    U(-1/√D_in, 1/√D_in) as in torch.nn.Linear.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, seed=0):
        self.in_features = check_size("in_features", in_features)
        self.out_features = check_size("out_features", out_features)
        dtype = check_dtype(dtype)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self.in_features)
        self.W = rng.uniform(-bound, bound, (self.in_features, self.out_features)).astype(dtype)  # (D_in, D_out)
        self.dW = np.zeros_like(self.W)
        self.b = rng.uniform(-bound, bound, self.out_features).astype(dtype) if bias else None  # (D_out,)
        self.db = np.zeros_like(self.b) if bias else None
        self._x = None

    def forward(self, x):
        """x (..., D_in)  ->  y = x W + b  (..., D_out)."""
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have last dimension in_features={self.in_features}, got shape {x.shape}")
        self._x = x
        # All leading dims flattened into one: a single (N, D_in) @ (D_in, D_out) GEMM.
        y = x.reshape(-1, self.in_features) @ self.W  # (N, D_out)
        if self.b is not None:
            y += self.b
        return y.reshape(x.shape[:-1] + (self.out_features,))  # (..., D_out)

    def backward(self, dy):
        """dy (..., D_out) = ∂L/∂y  ->  ∂L/∂x (..., D_in); accumulates dW and db."""
        if self._x is None:
            raise RuntimeError("Linear.backward called before forward")
        x = self._x
        dy = np.asarray(dy)
        if dy.shape != x.shape[:-1] + (self.out_features,):
            raise ValueError(f"dy must have shape {x.shape[:-1] + (self.out_features,)}, got {dy.shape}")
        x2 = x.reshape(-1, self.in_features)      # (N, D_in)
        dy2 = dy.reshape(-1, self.out_features)   # (N, D_out)
        self.dW += x2.T @ dy2                     # ∂L/∂W = xᵀ ∂L/∂y, one GEMM over all N rows   (D_in, D_out)
        if self.b is not None:
            self.db += dy2.sum(axis=0)            # ∂L/∂b = Σ_n ∂L/∂y_n   (D_out,)
        dx = dy2 @ self.W.T                       # ∂L/∂x = ∂L/∂y Wᵀ   (N, D_in)
        return dx.reshape(x.shape)

    def named_parameters(self):
        params = [("weight", self.W, self.dW)]
        if self.b is not None:
            params.append(("bias", self.b, self.db))
        return params

    def zero_grad(self):
        for _, _, grad in self.named_parameters():
            grad[...] = 0
