"""Optimizers (Adam, AdamW, SGD), an average of the weights they visit and global gradient-norm clipping. The
learning rate they are given step by step comes from schedule.py's WarmupDecay.

An optimizer takes a module's `named_parameters()`: a list of (name, value, grad) triples. `step()` reads
`grad` and updates `value` IN PLACE (the module keeps seeing its own arrays); `zero_grad()` zeroes `grad`.

Agreement with torch to the last bit (CPU, its default single-tensor path) comes from doing the same
floating-point operations in the same order. Where torch's CPU kernels round once for a multiply-add we
round once too, with `functional.fma`: `x.add(y, alpha=a)` and `lerp_` call `vec::fmadd` explicitly, and
GCC (which builds torch's Linux wheels, with FMA-capable kernels for AVX2/AVX512/aarch64) contracts
`addcmul_`'s `self + value*t1*t2` into one. `mul_`, `addcdiv_` (`self + (value*t1)/t2`) and the Python
scalar bias corrections round every operation, and so do we. One thing numpy cannot reproduce: torch's
float64 `sqrt` goes through MKL's vdSqrt on x86, which is not correctly rounded (1 ulp low on ~1% of
elements); `_sqrt` below is the seam tests use to swap it in and compare everything else bit for bit.
"""

import fnmatch
import math

import numpy as np

from .checks import check_number
from .functional import fma as _exact_fma
from .schedule import WarmupDecay  # noqa: F401  (lstm_np.optim.WarmupDecay, as before schedule.py)

__all__ = ["Adam", "AdamW", "SGD", "WeightAverage", "clip_grad_norm", "sum_of_squares"]

_BLOCK = 1 << 16  # elements per block of an update (256 KB in float32): its ~13 passes run over a block in cache
_sqrt = np.sqrt  # _sqrt(x, out=...): correctly rounded; see the module docstring for why tests may replace it


def _blocks(*arrays):
    """Matching blocks of _BLOCK elements of same-shaped arrays (views: writes go through), or the arrays
    whole when one of them is not C-contiguous. A None (a buffer the update does not use) stays None."""
    given = [a for a in arrays if a is not None]
    if not all(a.flags.c_contiguous for a in given):
        yield arrays
        return
    flat = [None if a is None else a.reshape(-1) for a in arrays]
    for start in range(0, given[0].size, _BLOCK):
        yield tuple(None if a is None else a[start:start + _BLOCK] for a in flat)


def _flat(a, name):
    """The flat view of a parameter's array (writes go through); a copy would lose them."""
    if not a.flags.c_contiguous:
        raise ValueError(f"parameter {name!r}: a piece of it is updated only when its arrays are C-contiguous")
    return a.reshape(-1)


def _check_params(params):
    """A non-empty list of (name, value, grad) with unique names and value/grad of one shape and dtype."""
    params = list(params)
    if not params:
        raise ValueError("params is empty: the optimizer has nothing to update")
    seen = set()
    for entry in params:
        if not (isinstance(entry, tuple) and len(entry) == 3):
            raise ValueError(f"params must hold (name, value, grad) triples, got {entry!r:.80}")
        name, value, grad = entry
        if name in seen:
            raise ValueError(f"params has the name {name!r} twice; parameter names must be unique")
        seen.add(name)
        if not (isinstance(value, np.ndarray) and isinstance(grad, np.ndarray)):
            raise ValueError(f"parameter {name!r}: value and grad must be numpy arrays")
        if not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"parameter {name!r}: value must be a floating array, got dtype {value.dtype}")
        if value.shape != grad.shape or value.dtype != grad.dtype:
            raise ValueError(f"parameter {name!r}: value {value.shape} {value.dtype} and grad "
                             f"{grad.shape} {grad.dtype} must have the same shape and dtype")
    return params


def _check_lr_scale(lr_scale, params):
    """{parameter name: learning-rate multiplier} from {fnmatch pattern: multiplier}.

    Every pattern must match at least one parameter (a typo would otherwise silently change nothing), and a
    parameter matched by several patterns must get one multiplier from all of them. Unmatched parameters get 1.
    """
    if lr_scale is None:
        return {}
    if not isinstance(lr_scale, dict):
        raise TypeError(f"lr_scale must be a dict {{name pattern: multiplier}}, got {type(lr_scale).__name__}")
    scales = {}
    for pattern, factor in lr_scale.items():
        if not isinstance(pattern, str):
            raise TypeError(f"lr_scale keys must be parameter-name patterns (str), got {pattern!r}")
        factor = check_number(f"lr_scale[{pattern!r}]", factor, low=0)
        matched = [name for name, _, _ in params if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise ValueError(f"lr_scale pattern {pattern!r} matches no parameter (names look like "
                             f"{params[0][0]!r})")
        for name in matched:
            if scales.get(name, factor) != factor:
                raise ValueError(f"lr_scale gives parameter {name!r} two multipliers, {scales[name]:g} and "
                                 f"{factor:g}")
            scales[name] = factor
    return scales


def _restore(buffers, step_key, state, owner):
    """Copy `state` ({key: array}, as a state_dict() wrote it) into `buffers` ({key: array}) and -> its step
    count (entry `step_key`). ValueError naming the first mismatch, before anything is copied: `state` must
    hold exactly those keys and `step_key`, each buffer's shape, and a step that is an integer scalar >= 0."""
    expected, given = set(buffers) | {step_key}, set(state.keys())
    if given != expected:
        raise ValueError(f"state dict does not match {owner}: missing {sorted(expected - given)[:5]}, "
                         f"unexpected {sorted(given - expected)[:5]}")
    step = np.asarray(state[step_key])
    if step.shape != () or not np.issubdtype(step.dtype, np.integer) or step < 0:
        raise ValueError(f"state dict entry {step_key!r} must be an integer scalar >= 0, got {step!r}")
    for key, buf in buffers.items():
        if np.shape(state[key]) != buf.shape:
            raise ValueError(f"state dict entry {key!r} has shape {np.shape(state[key])}, expected {buf.shape}")
    for key, buf in buffers.items():
        buf[...] = state[key]
    return int(step)


class _Optimizer:
    """Shared plumbing: the parameter list, a validated `lr` and per-parameter `lr_scale`, the step loop
    (block by block), zero_grad, and state_dict I/O.

    lr_scale ({fnmatch pattern: multiplier}, e.g. {"*.W_c": 0.1}): the parameters whose names match take
    steps with lr · multiplier, exactly as a torch param group whose lr is that product (0 freezes them).
    The schedule sets `lr`; the multipliers ride on it. They are configuration, not state: `state_dict()`
    does not hold them.

    exact: whether a·b + c rounds once (`functional.fma`, torch's bits, ~15x the cost) or twice (plain numpy).
    None means exact for float64 parameters (where docs/design.md promises torch's bits) and plain for float32
    (where training speed matters and the bits are not promised).

    Subclasses fill `self._state` ({key: buffer}, one buffer per parameter), name a parameter's buffers in
    `buffers` and write their update once, in `_update`, for one block of a parameter: the step runs it
    block by block in both modes, so its passes stay in cache and its scratch buffers stay one block small.
    """

    def __init__(self, params, lr, exact=None, lr_scale=None):
        self.params = _check_params(params)
        self.lr = lr
        if exact not in (None, True, False):
            raise ValueError(f"exact must be None, True or False, got {exact!r}")
        self.exact = exact
        self._scale = _check_lr_scale(lr_scale, self.params)
        self.step_count = 0
        self._state = {}
        self._scratches = {}

    def lr_of(self, name):
        """The learning rate parameter `name` steps with now: lr, times its lr_scale multiplier if it has one."""
        scale = self._scale.get(name)
        return self.lr if scale is None else self.lr * scale

    def step(self, pieces=None):
        """One update of every parameter; or, given `pieces` ({name: (start, stop)}), of those elements of the
        named parameters' flattened values only (a data-parallel worker's share, parallel.py), with the
        same operations as the whole update, so the elements it reaches get the same bits."""
        self.step_count += 1
        for name, p, g in self.params:
            lr, exact = self.lr_of(name), p.dtype == np.float64 if self.exact is None else self.exact
            arrays = (p, g, *self.buffers(name))
            if pieces is not None:
                if name not in pieces:
                    continue
                start, stop = pieces[name]
                arrays = tuple(None if a is None else _flat(a, name)[start:stop] for a in arrays)
            for block in _blocks(*arrays):
                self._update(*block, lr=lr, exact=exact)

    def _muladd(self, a, b, c, exact, out):
        """out ← a·b + c, rounded once when exact, else twice (through a scratch buffer); out may be a or c."""
        if exact:
            out[...] = _exact_fma(a, b, c)
        else:
            np.add(np.multiply(a, b, out=self._scratch(out, "product")), c, out=out)
        return out

    def _scratch(self, p, k):
        """Scratch buffer k shaped like p (a block at most), carved from one flat buffer per (k, dtype) that
        grows to the largest asked for: in-place updates without allocating per step."""
        key = (k, p.dtype)
        buf = self._scratches.get(key)
        if buf is None or buf.size < p.size:
            buf = self._scratches[key] = np.empty(p.size, dtype=p.dtype)
        return buf[:p.size].reshape(p.shape)

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):  # validated on every assignment, since schedules set it every step
        self._lr = check_number("lr", value, low=0)

    def zero_grad(self):
        for _, _, grad in self.params:
            grad[...] = 0

    def state_dict(self):
        """Flat {key: numpy array} ready for np.savez: "step" plus one buffer per parameter ("m/<name>", ...)."""
        state = {"step": np.array(self.step_count, dtype=np.int64)}
        state.update({key: buf.copy() for key, buf in self._state.items()})
        return state

    def load_state_dict(self, state):
        """Restore what state_dict() returned (or np.load of it); the keys and shapes must match exactly."""
        self.step_count = _restore(self._state, "step", state, "the optimizer")


class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015) with torch.optim.Adam's exact update (amsgrad=False, maximize=False).

    For each step t = 1, 2, ... and every parameter p with gradient g:

        g  ← g + λ p                              if weight_decay λ != 0   (L2 penalty folded into g)
        m  ← m + (1 - β1)(g - m)                  = β1 m + (1 - β1) g, as torch's lerp_
        v  ← β2 v + (1 - β2) g²
        α_t = lr / (1 - β1^t)
        p  ← p - α_t m / (√v / √(1 - β2^t) + ε)

    Operation order (torch's `_single_tensor_adam` and its CPU kernels; see the module docstring):
        g = fma(p, λ, g)                                          grad.add(param, alpha=λ)
        m = fma(g - m, w, m)  if |w| < 0.5,  w = 1 - β1           exp_avg.lerp_(grad, w)
          = fma(g - m, w - 1, g) otherwise
        v = fma((1 - β2)·g, g, v·β2)                              mul_(β2).addcmul_(g, g, value=1 - β2)
        denom = √v / (1 - β2^t)**0.5 + ε                          (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
        p = p + ((-α_t)·m) / denom                                param.addcdiv_(m, denom, value=-α_t)
    """

    _decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, exact=None, lr_scale=None):
        super().__init__(params, lr, exact, lr_scale)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = tuple(check_number("betas", beta, 0, 1, high_inclusive=False) for beta in betas)
        self.eps = check_number("eps", eps, low=0)
        self.weight_decay = check_number("weight_decay", weight_decay, low=0)
        for name, value, _ in self.params:
            self._state["m/" + name] = np.zeros_like(value)  # first moment (mean of g)
            self._state["v/" + name] = np.zeros_like(value)  # second moment (mean of g²)

    def buffers(self, name):
        """The state arrays shaped like parameter `name`: its two moments."""
        return self._state["m/" + name], self._state["v/" + name]

    def _update(self, p, g, m, v, lr, exact):
        t = self.step_count
        beta1, beta2 = self.betas
        wd = self.weight_decay
        step_size = lr / (1 - beta1 ** t)                                # α_t
        bias_correction2_sqrt = (1 - beta2 ** t) ** 0.5                 # torch: `** 0.5`, not math.sqrt
        tmp, upd = self._scratch(p, 0), self._scratch(p, 1)
        if wd != 0 and self._decoupled_weight_decay:
            p *= 1 - lr * wd                                             # p ← p (1 - lr λ)   (AdamW)
        elif wd != 0:
            g = self._muladd(p, wd, g, exact, out=self._scratch(p, 2))   # g ← g + λ p   (grad left untouched)
        w = p.dtype.type(1 - beta1)                                      # lerp weight, in p's dtype as torch casts it
        np.subtract(g, m, out=tmp)                                       # g - m
        if abs(w) < 0.5:
            self._muladd(tmp, w, m, exact, out=m)                        # m ← m + w (g - m)
        else:
            self._muladd(tmp, w - 1, g, exact, out=m)                    # m ← g - (1 - w)(g - m)
        v *= beta2
        np.multiply(g, 1 - beta2, out=tmp)
        self._muladd(tmp, g, v, exact, out=v)                            # v ← β2 v + (1 - β2) g²
        _sqrt(v, out=tmp)
        tmp /= bias_correction2_sqrt
        tmp += self.eps                                                  # denom = √v̂ + ε
        np.multiply(m, -step_size, out=upd)
        upd /= tmp
        p += upd                                                         # p ← p - α_t m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW:

        p ← p (1 - lr λ)            before the Adam update, which then sees the raw gradient g.
    """

    _decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, exact=None, lr_scale=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, exact=exact,
                         lr_scale=lr_scale)


class SGD(_Optimizer):
    """Stochastic gradient descent with optional momentum, as torch.optim.SGD (dampening=0):

        g ← g + λ p                                    if weight_decay λ != 0       fma(p, λ, g)
        b ← g at the first step, else μ b + g          if momentum μ != 0           b·μ, then + g
        g ← g + μ b  (nesterov)  or  g ← b             if momentum μ != 0           fma(b, μ, g)
        p ← p - lr g                                                                fma(g, -lr, p)
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False, exact=None, lr_scale=None):
        super().__init__(params, lr, exact, lr_scale)
        self.momentum = check_number("momentum", momentum, low=0)
        self.weight_decay = check_number("weight_decay", weight_decay, low=0)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True requires momentum > 0")
        self.nesterov = bool(nesterov)
        if self.momentum != 0:
            for name, value, _ in self.params:
                self._state["momentum/" + name] = np.zeros_like(value)  # b

    def buffers(self, name):
        """The state arrays shaped like parameter `name`: its momentum buffer, None without momentum."""
        return (self._state.get("momentum/" + name),)

    def _update(self, p, g, b, lr, exact):
        mu, wd = self.momentum, self.weight_decay
        if wd != 0:
            g = self._muladd(p, wd, g, exact, out=self._scratch(p, 0))         # g ← g + λ p
        if mu != 0:
            if self.step_count == 1:
                b[...] = g                                                 # b ← g
            else:
                b *= mu
                b += g                                                     # b ← μ b + g
            g = self._muladd(b, mu, g, exact, out=self._scratch(p, 1)) if self.nesterov else b   # g ← g + μ b  or  b
        self._muladd(g, -lr, p, exact, out=p)                              # p ← p - lr g


class WeightAverage:
    """An exponential moving average of the weights an optimizer visits (Polyak averaging), bias-corrected as
    Adam's moments are. After update t of the parameters p, with decay d:

        a ← a + (1 - d)(p - a)          a = 0 before the first update
        averaged weights  â = a / (1 - d^t)  = Σ_k d^(t-k) p_k / Σ_k d^(t-k)

    the mean of the weights after every update so far, the update k weighted by d^(t-k): the last
    1 / (1 - d) updates count most, and the start of a run does not pull the average back towards the initial
    weights. Late in training the weights jitter around a minimum by the learning rate's steps, and their
    average sits nearer its centre.

    Called like an optimizer after each of its steps, `step(pieces)` with the same pieces: a data-parallel
    worker averages only the share of the weights it updated (parallel.py), and `buffers(name)`, `params`,
    `state_dict()` / `load_state_dict()` let a World gather the shares and a checkpoint keep them, as for
    Adam's moments. Keys: "average/<name>" per parameter and "average_step".
    """

    def __init__(self, params, decay):
        self.params = _check_params(params)
        self.decay = check_number("decay", decay, 0, 1, low_inclusive=False, high_inclusive=False)
        self.step_count = 0
        self._state = {"average/" + name: np.zeros_like(value) for name, value, _ in self.params}
        self._scratch = {}

    def buffers(self, name):
        """The state array shaped like parameter `name`: its running average a (not yet bias-corrected)."""
        return (self._state["average/" + name],)

    def step(self, pieces=None):
        """a ← a + (1 - d)(p - a) for every parameter, or for the `pieces` ({name: (start, stop)} of the
        flattened values) a worker updated."""
        self.step_count += 1
        for name, p, _ in self.params:
            (a,) = self.buffers(name)
            if pieces is not None:
                if name not in pieces:
                    continue
                start, stop = pieces[name]
                p, a = _flat(p, name)[start:stop], _flat(a, name)[start:stop]
            for p_block, a_block in _blocks(p, a):
                tmp = self._scratch.get(a_block.dtype)
                if tmp is None or tmp.size < a_block.size:
                    tmp = self._scratch[a_block.dtype] = np.empty(max(a_block.size, _BLOCK), a_block.dtype)
                tmp = tmp[:a_block.size].reshape(a_block.shape)
                np.subtract(p_block, a_block, out=tmp)                      # p - a
                tmp *= 1 - self.decay
                a_block += tmp                                              # a ← a + (1 - d)(p - a)

    def averaged(self):
        """{name: â}: new arrays, in the parameters' dtypes (a parameter never updated yet: its zeros)."""
        correction = 1 - self.decay ** self.step_count if self.step_count else 1.0
        return {name: (self.buffers(name)[0] / correction).astype(value.dtype) for name, value, _ in self.params}

    def state_dict(self):
        """Flat {key: numpy array}: "average_step" and "average/<name>" per parameter."""
        return {"average_step": np.array(self.step_count, dtype=np.int64),
                **{key: buf.copy() for key, buf in self._state.items()}}

    def load_state_dict(self, state):
        """Restore what state_dict() returned; the keys and shapes must match exactly."""
        self.step_count = _restore(self._state, "average_step", state, "the weight average")


def sum_of_squares(grads):
    """Σ g² over the arrays `grads`, accumulated in float64 whatever their dtype."""
    return sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads)


def clip_grad_norm(params, max_norm, norm=None):
    """Scale all gradients together so their global L2 norm is at most max_norm; return the norm before.

        ‖g‖ = sqrt(Σ_params Σ g²)      (accumulated in float64, whatever the parameter dtype)
        g  ← g · max_norm / (‖g‖ + 1e-6)      only if ‖g‖ > max_norm   (torch's clip_grad_norm_ formula)

    norm: ‖g‖ when the caller knows it (data-parallel workers each hold a share of the gradient and add
    their shares' Σ g² up, parallel.py); `params` are then the share to scale.
    A non-finite norm (inf or nan gradients) is returned unchanged and nothing is scaled, so the caller
    can see it and skip the step.
    """
    max_norm = check_number("max_norm", max_norm, low=0, low_inclusive=False)
    grads = [grad for _, _, grad in params]
    if norm is None:
        norm = math.sqrt(sum_of_squares(grads))
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads:
            g *= scale
    return norm
