"""Finite-difference gradient checking: the evidence that every hand-written backward is right.

    numerical ∂L/∂θ_j ≈ (L(θ + ε e_j) − L(θ − ε e_j)) / 2ε          (central differences, error O(ε²))
    relative error    = ‖g_analytic − g_numerical‖₂ / (‖g_analytic‖₂ + ‖g_numerical‖₂)

The relative error is measured per named array (not per element, where a gradient of 1e-12 against a
difference of 1e-12 would read as 100% wrong). In float64 with ε = 1e-6, a correct backward gives 1e-9 or
less; a wrong one gives 1e-2 or more.

Run `python -m lstm_np.gradcheck` for the table of every peephole variant × masked/unmasked × 1 layer /
2 layers bidirectional; it exits non-zero if any entry exceeds 1e-7.
"""
import sys

import numpy as np

from .lstm import LSTM

TOLERANCE = 1e-7


def relative_error(analytic, numerical):
    """‖a − n‖ / (‖a‖ + ‖n‖), and 0.0 when both are exactly zero."""
    a, n = np.asarray(analytic, np.float64), np.asarray(numerical, np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - n) / denom)


def numerical_gradient(loss_fn, array, eps=1e-6):
    """Central-difference gradient of the scalar `loss_fn()` with respect to `array`, perturbed in place.

    `array` may be a view (e.g. one gate's block of a fused weight): writes go through to the model.
    """
    if array.dtype != np.float64:
        raise TypeError(f"array must be float64 for a meaningful finite-difference check, got {array.dtype}")
    grad = np.zeros(array.shape)
    for idx in np.ndindex(*array.shape):
        old = array[idx]
        array[idx] = old + eps
        plus = loss_fn()
        array[idx] = old - eps
        minus = loss_fn()
        array[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def check_gradients(loss_fn, arrays, analytic, eps=1e-6):
    """{name: relative error} comparing `analytic[name]` to the numerical gradient of `loss_fn()` w.r.t.
    `arrays[name]` for every name. `loss_fn` must recompute the loss from the arrays' current values."""
    return {name: relative_error(analytic[name], numerical_gradient(loss_fn, arr, eps))
            for name, arr in arrays.items()}


def check_lstm(peephole="full", num_layers=1, bidirectional=False, masked=False,
               T=5, B=3, D=3, H=4, seed=0, eps=1e-6):
    """Gradient check of `LSTM.forward/backward` on a small float64 problem.

    The loss is L = Σ dy ⊙ y + Σ dh_n ⊙ h_n + Σ dc_n ⊙ c_n with random upstream gradients, the biases are
    random (nonzero), and with `masked` the batch has lengths < T. Returns {name: relative error} for every
    equation parameter of every cell (named "l{layer}.{fwd|bwd}.W_xi", ...) and for x, h0, c0.
    """
    rng = np.random.default_rng(seed)
    lstm = LSTM(D, H, num_layers=num_layers, peephole=peephole, bidirectional=bidirectional,
                dtype=np.float64, seed=seed)
    nd = lstm.num_directions
    for _, value, _ in lstm.named_parameters():
        value[...] = rng.normal(0.0, 0.5, size=value.shape)      # nonzero biases, peepholes that matter
    x = rng.normal(size=(T, B, D))
    h0, c0 = rng.normal(size=(2, num_layers * nd, B, H))
    lengths = rng.integers(1, T + 1, size=B) if masked else None
    if masked:
        lengths[0], lengths[-1] = T, max(1, T - 2)               # both a full and a padded sequence
    dy = rng.normal(size=(T, B, nd * H))
    dh_n, dc_n = rng.normal(size=(2, num_layers * nd, B, H))

    def loss():
        y, (h_n, c_n) = lstm.forward(x, h0, c0, lengths)
        return float(np.sum(dy * y) + np.sum(dh_n * h_n) + np.sum(dc_n * c_n))

    lstm.zero_grad()
    lstm.forward(x, h0, c0, lengths)
    dx, (dh0, dc0) = lstm.backward(dy, dh_n, dc_n)
    arrays, analytic = {"x": x, "h0": h0, "c0": c0}, {"x": dx, "h0": dh0, "c0": dc0}
    for layer in range(num_layers):
        for d in range(nd):
            cell = lstm.cell(layer, d)
            prefix = f"l{layer}.{('fwd', 'bwd')[d]}."
            grads = cell.equation_grads()
            for name, view in cell.equation_params().items():
                arrays[prefix + name] = view
                analytic[prefix + name] = grads[name].copy()
    return check_gradients(loss, arrays, analytic, eps)


CONFIGS = [(peephole, masked, layers, layers > 1)
           for peephole in ("full", "diagonal", "none")
           for masked in (False, True)
           for layers in (1, 2)]


def worst_by_parameter(errors):
    """Collapse "l1.bwd.W_xi" to "W_xi", keeping the worst error over layers and directions."""
    worst = {}
    for name, err in errors.items():
        key = name.split(".")[-1]
        worst[key] = max(err, worst.get(key, 0.0))
    return worst


def main():
    """Print the table of worst relative errors; exit status 1 if any exceeds TOLERANCE."""
    columns, results = [], []
    for peephole, masked, layers, bidir in CONFIGS:
        columns.append(f"{peephole[:4]}/{'mask' if masked else 'full'}/{layers}L{'-bi' if bidir else ''}")
        results.append(worst_by_parameter(check_lstm(peephole, layers, bidir, masked)))
    rows = []
    for r in results:
        rows += [k for k in r if k not in rows]
    width = max(len(c) for c in columns) + 1
    print("worst relative error per parameter, float64, central differences (eps=1e-6), tolerance 1e-7")
    print("columns: peephole / lengths (full or masked) / layers (-bi: bidirectional)\n")
    print(f"{'':6}" + "".join(f"{c:>{width}}" for c in columns))
    for row in rows:
        cells = [f"{r[row]:.1e}" if row in r else "-" for r in results]
        print(f"{row:6}" + "".join(f"{c:>{width}}" for c in cells))
    worst = max(max(r.values()) for r in results)
    print(f"\nworst overall: {worst:.2e} ({'PASS' if worst <= TOLERANCE else 'FAIL'})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
