"""Optimizers (Adam, AdamW, SGD), global gradient-norm clipping and a warm-up/decay learning-rate schedule.

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

from .functional import fma as _exact_fma

__all__ = ["Adam", "AdamW", "SGD", "clip_grad_norm", "WarmupDecay"]

def _plain_muladd(a, b, c):
    return a * b + c


_BLOCK = 1 << 16  # elements per block of the in-place plain update (256 KB in float32): its buffers stay in cache
_sqrt = np.sqrt  # correctly rounded; see the module docstring for why tests may replace it


def _check_number(name, value, low=0.0, low_inclusive=True):
    """A finite real number >= low (or > low)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (value >= low if low_inclusive else value > low)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>=' if low_inclusive else '>'} {low}, got {value!r}")
    return value


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
        factor = _check_number(f"lr_scale[{pattern!r}]", factor)
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


class _Optimizer:
    """Shared plumbing: the parameter list, a validated `lr` and per-parameter `lr_scale`, zero_grad, and
    state_dict I/O.

    lr_scale ({fnmatch pattern: multiplier}, e.g. {"*.W_c": 0.1}): the parameters whose names match take
    steps with lr · multiplier, exactly as a torch param group whose lr is that product (0 freezes them).
    The schedule sets `lr`; the multipliers ride on it. They are configuration, not state: `state_dict()`
    does not hold them.

    Subclasses set `self.step_count` and fill `self._state` ({key: buffer}, one buffer per parameter).
    """

    def __init__(self, params, lr, exact=None, lr_scale=None):
        self.params = _check_params(params)
        self.lr = lr
        if exact not in (None, True, False):
            raise ValueError(f"exact must be None, True or False, got {exact!r}")
        self.exact = exact
        self.lr_scale = dict(lr_scale or {})
        self._scale = _check_lr_scale(lr_scale, self.params)
        self.step_count = 0
        self._state = {}
        self._buffers = {}

    def lr_of(self, name):
        """The learning rate parameter `name` steps with now: lr, times its lr_scale multiplier if it has one."""
        scale = self._scale.get(name)
        return self.lr if scale is None else self.lr * scale

    def muladd(self, p):
        """a·b + c for parameter p: rounded once (`functional.fma`, torch's bits, ~15x the cost) when exact,
        else plain numpy. exact=None means exact for float64 parameters (where docs/design.md promises torch's
        bits) and plain for float32 (where training speed matters and the bits are not promised)."""
        return _exact_fma if self._exact_for(p) else _plain_muladd

    def _exact_for(self, p):
        return p.dtype == np.float64 if self.exact is None else self.exact

    def _scratch(self, p, k):
        """Scratch buffer k shaped like p, carved from one flat buffer per (k, dtype) that grows to the
        largest block asked for: in-place updates without allocating per step."""
        key = (k, p.dtype)
        buf = self._buffers.get(key)
        if buf is None or buf.size < p.size:
            buf = self._buffers[key] = np.empty(p.size, dtype=p.dtype)
        return buf[:p.size].reshape(p.shape)

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):  # validated on every assignment, since schedules set it every step
        self._lr = _check_number("lr", value)

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
        expected, given = set(self.state_dict()), set(state.keys())
        if given != expected:
            raise ValueError(f"state dict does not match the optimizer: missing {sorted(expected - given)}, "
                             f"unexpected {sorted(given - expected)}")
        step = np.asarray(state["step"])
        if step.shape != () or not np.issubdtype(step.dtype, np.integer) or step < 0:
            raise ValueError(f"state dict entry 'step' must be an integer scalar >= 0, got {step!r}")
        for key, buf in self._state.items():
            if np.shape(state[key]) != buf.shape:
                raise ValueError(f"state dict entry {key!r} has shape {np.shape(state[key])}, expected {buf.shape}")
        self.step_count = int(step)
        for key, buf in self._state.items():
            buf[...] = state[key]


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
        self.betas = tuple(_check_number("betas", beta) for beta in betas)
        if not all(beta < 1 for beta in self.betas):
            raise ValueError(f"betas must each be in [0, 1), got {betas!r}")
        self.eps = _check_number("eps", eps)
        self.weight_decay = _check_number("weight_decay", weight_decay)
        for name, value, _ in self.params:
            self._state["m/" + name] = np.zeros_like(value)  # first moment (mean of g)
            self._state["v/" + name] = np.zeros_like(value)  # second moment (mean of g²)

    def step(self):
        self.step_count += 1
        t = self.step_count
        beta1, beta2 = self.betas
        wd = self.weight_decay
        bias_correction1 = 1 - beta1 ** t
        bias_correction2_sqrt = (1 - beta2 ** t) ** 0.5                 # torch: `** 0.5`, not math.sqrt
        for name, p, g in self.params:
            m, v = self._state["m/" + name], self._state["v/" + name]
            lr = self.lr_of(name)
            step_size = lr / bias_correction1                            # α_t
            if not self._exact_for(p):
                self._plain_step(p, g, m, v, lr, step_size, bias_correction2_sqrt)
                continue
            fma = self.muladd(p)
            if wd != 0 and self._decoupled_weight_decay:
                p *= 1 - lr * wd                                         # p ← p (1 - lr λ)   (AdamW)
            elif wd != 0:
                g = fma(p, wd, g)                                        # g ← g + λ p
            w = p.dtype.type(1 - beta1)                                  # lerp weight, in p's dtype as torch casts it
            if abs(w) < 0.5:
                m[...] = fma(g - m, w, m)                                # m ← m + w (g - m)
            else:
                m[...] = fma(g - m, w - 1, g)                            # m ← g - (1 - w)(g - m)
            v *= beta2
            v[...] = fma((1 - beta2) * g, g, v)                          # v ← β2 v + (1 - β2) g²
            denom = _sqrt(v) / bias_correction2_sqrt + self.eps          # √v̂ + ε
            p += ((-step_size) * m) / denom                              # p ← p - α_t m / denom


    def _plain_step(self, p, g, m, v, lr, step_size, bias_correction2_sqrt):
        """The same update with plain (separately rounded) arithmetic, in the same operation order as the
        exact path with `_plain_muladd` (so the same bits), but in place and block by block: the ~13 passes
        of the update then run over a block that stays in cache, instead of streaming a parameter of
        several MB from memory 13 times and allocating a temporary for each operation. The price: up to three
        scratch buffers of one block each per dtype, kept for the optimizer's life (0.75 MB in float32).
        Its sqrt is numpy's: the `_sqrt` seam of the module docstring concerns the exact path only."""
        arrays = (p, g, m, v)
        if not all(a.flags.c_contiguous for a in arrays):
            self._plain_block(p, g, m, v, lr, step_size, bias_correction2_sqrt)
            return
        flat = [a.reshape(-1) for a in arrays]                           # views: writes go through
        for start in range(0, p.size, _BLOCK):
            self._plain_block(*(a[start:start + _BLOCK] for a in flat), lr, step_size, bias_correction2_sqrt)

    def _plain_block(self, p, g, m, v, lr, step_size, bias_correction2_sqrt):
        beta1, beta2 = self.betas
        wd = self.weight_decay
        tmp, upd = self._scratch(p, 0), self._scratch(p, 1)
        if wd != 0 and self._decoupled_weight_decay:
            p *= 1 - lr * wd                                             # p ← p (1 - lr λ)   (AdamW)
        elif wd != 0:
            g_wd = np.multiply(p, wd, out=self._scratch(p, 2))
            g_wd += g
            g = g_wd                                                     # g ← g + λ p   (grad left untouched)
        w = p.dtype.type(1 - beta1)
        np.subtract(g, m, out=tmp)                                       # g - m
        if abs(w) < 0.5:
            tmp *= w
            m += tmp                                                     # m ← m + w (g - m)
        else:
            tmp *= w - 1
            np.add(tmp, g, out=m)                                        # m ← g - (1 - w)(g - m)
        v *= beta2
        np.multiply(g, 1 - beta2, out=tmp)
        tmp *= g
        v += tmp                                                         # v ← β2 v + (1 - β2) g²
        np.sqrt(v, out=tmp)
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
        self.momentum = _check_number("momentum", momentum)
        self.weight_decay = _check_number("weight_decay", weight_decay)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True requires momentum > 0")
        self.nesterov = bool(nesterov)
        if self.momentum != 0:
            for name, value, _ in self.params:
                self._state["momentum/" + name] = np.zeros_like(value)  # b

    def step(self):
        self.step_count += 1
        mu, wd = self.momentum, self.weight_decay
        for name, p, g in self.params:
            lr = self.lr_of(name)
            fma = self.muladd(p)
            if wd != 0:
                g = fma(p, wd, g)                          # g ← g + λ p
            if mu != 0:
                b = self._state["momentum/" + name]
                if self.step_count == 1:
                    b[...] = g                             # b ← g
                else:
                    b *= mu
                    b += g                                 # b ← μ b + g
                g = fma(b, mu, g) if self.nesterov else b  # g ← g + μ b   or   g ← b
            p[...] = fma(g, -lr, p)                        # p ← p - lr g


def clip_grad_norm(params, max_norm):
    """Scale all gradients together so their global L2 norm is at most max_norm; return the norm before.

        ‖g‖ = sqrt(Σ_params Σ g²)      (accumulated in float64, whatever the parameter dtype)
        g  ← g · max_norm / (‖g‖ + 1e-6)      only if ‖g‖ > max_norm   (torch's clip_grad_norm_ formula)

    A non-finite norm (inf or nan gradients) is returned unchanged and nothing is scaled, so the caller
    can see it and skip the step.
    """
    max_norm = _check_number("max_norm", max_norm, low=0.0, low_inclusive=False)
    grads = [grad for _, _, grad in params]
    norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads:
            g *= scale
    return norm


class WarmupDecay:
    """Learning rate for optimizer step `step` (0-based): linear warm-up, then cosine or linear decay.

        min_lr = final_lr_fraction · base_lr
        1) step < warmup_steps:   lr = base_lr · (step + 1) / warmup_steps
                                  linear, on the line through 0 at step -1, so step 0 already moves and
                                  step warmup_steps - 1 reaches base_lr
        2) step >= total_steps:   lr = min_lr, constant from then on
        3) otherwise:             progress = (step - warmup_steps) / (total_steps - warmup_steps)   in [0, 1)
                                  coeff = (1 + cos(π · progress)) / 2     (kind="cosine")
                                  coeff = 1 - progress                    (kind="linear")
                                  lr = min_lr + coeff · (base_lr - min_lr)
    """

    def __init__(self, base_lr, warmup_steps, total_steps, final_lr_fraction=0.1, kind="cosine"):
        self.base_lr = _check_number("base_lr", base_lr)
        for name, value in (("warmup_steps", warmup_steps), ("total_steps", total_steps)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if total_steps < warmup_steps:
            raise ValueError(f"total_steps ({total_steps}) must be >= warmup_steps ({warmup_steps})")
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)
        self.final_lr_fraction = _check_number("final_lr_fraction", final_lr_fraction)
        if self.final_lr_fraction > 1:
            raise ValueError(f"final_lr_fraction must be in [0, 1], got {final_lr_fraction!r}")
        if kind not in ("cosine", "linear"):
            raise ValueError(f"kind must be 'cosine' or 'linear', got {kind!r}")
        self.kind = kind

    def __call__(self, step):
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        min_lr = self.final_lr_fraction * self.base_lr
        if step < self.warmup_steps:                                           # 1) warm-up
            return self.base_lr * (step + 1) / self.warmup_steps
        if step >= self.total_steps:                                           # 2) after the end
            return min_lr
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)   # 3) decay
        coeff = 0.5 * (1 + math.cos(math.pi * progress)) if self.kind == "cosine" else 1 - progress
        return min_lr + coeff * (self.base_lr - min_lr)
