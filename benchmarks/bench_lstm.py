"""Speed benchmark of the LSTM core: one layer, forward + backward, against the GEMM rate and PyTorch.

Every row times `lstm.forward(x)` then `lstm.backward(dy)` (one layer, unidirectional, D = H) and, in the
same run, in alternating blocks with it (the machine is shared and noisy: only ratios measured side by side
mean something; see `timing.time_interleaved` for why blocks and not single calls):

  * GEMM: the machine's GEMM rate through numpy at this size, from ONE big `X @ W` of the x-projection's
    shape (T·B, D) x (D, 4H). "%GEMM" is lstm_np's GFLOP/s as a percentage of it.
  * floor: lstm_np's GEMM calls alone, same shapes and count, no elementwise work (`floor_work`): the
    least time this GEMM schedule can take on this BLAS. "floor/torch" above a target ratio means no
    NumPy code computing these products as per-step GEMMs gets there, however the rest is written
    (merging calls, e.g. the weight gradients as one [X | H]ᵀ dA, keeps the flops and saves only calls).
    A row whose floor comes out above lstm_np's own time was disturbed (the floor does strictly less
    work) and is marked "noisy".
  * torch (when it imports; it is never a dependency of lstm_np): peephole="none" runs torch.nn.LSTM;
    "diagonal" and "full" run the same peephole equations (docs/design.md §1) written step by step with torch
    autograd, the way a user would (one matmul for the x-projection of all steps). "np/torch" is the ratio
    of median times, below 1 when lstm_np is faster. The first call of every row checks that both compute
    the same y and ∂L/∂x (max |Δ| of each is in the JSON).

    python benchmarks/bench_lstm.py                  # full table, about 4 minutes on 2 cores
    python benchmarks/bench_lstm.py --quick          # two sizes, fewer rounds, under a minute
    python benchmarks/bench_lstm.py --threads 1      # numpy's BLAS and torch single-threaded (stable under load)
    python benchmarks/bench_lstm.py --json out.json  # default benchmarks/results/bench_lstm.json

GFLOP/s counts the GEMM flops of forward + backward analytically (elementwise work is not counted):

    every variant: 3 passes (forward; ∂L/∂inputs; ∂L/∂weights) x 2·T·B·4H·(D + H)  =  24·T·B·H·(D + H)
    "full" adds the (H, H) peephole matrices W_ci, W_cf, W_cc, W_co:  3 x 2·T·B·4H·H  =  24·T·B·H²
"""
import argparse
import os
import platform
import sys
import time

import numpy as np

import common  # benchmarks/common.py, next to this script
import lstm_np as ln
from timing import time_interleaved  # benchmarks/timing.py, next to this script

try:
    import torch
except ImportError:
    torch = None

SIZES = [(50, 32, 128), (50, 32, 256), (50, 64, 512), (20, 1, 64)]  # (T, B, D = H)
QUICK_SIZES = [(50, 32, 256), (20, 1, 64)]
PEEPHOLES = ("none", "diagonal", "full")
DTYPES = (np.float32, np.float64)


def gemm_flops(T, B, D, H, peephole):
    """Analytic GEMM flops of one forward + backward (see the module docstring)."""
    flops = 24 * T * B * H * (D + H)
    if peephole == "full":
        flops += 24 * T * B * H * H
    return flops


# ---------------------------------------------------------------------------------------------------------
# machine
def blas_info():
    """numpy's BLAS as numpy reports it, plus threadpoolctl's runtime view when that is installed."""
    info = {}
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = {k: deps.get(k) for k in ("name", "version", "openblas configuration")}
    except Exception as exc:  # show_config's layout differs between numpy versions
        info["numpy_blas"] = f"unavailable ({exc.__class__.__name__})"
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads",
                                                       "architecture", "filepath")} for p in threadpool_info()]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    return info


def machine_info():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
        "cores": os.cpu_count(), "numpy": np.__version__, **blas_info(),
        "torch": torch.__version__ if torch is not None else None,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "torch_blas": _torch_blas() if torch is not None else None,
        "env": {k: v for k, v in os.environ.items()
                if k.startswith(("OPENBLAS", "OMP_", "MKL_", "GOTO", "BLIS", "VECLIB"))},
        "load_average": common.load_average(),
    }


def _torch_blas():
    for part in torch.__config__.show().split(","):
        if "BLAS_INFO" in part:
            return part.split("=", 1)[1].strip()
    return None


# ---------------------------------------------------------------------------------------------------------
# the workloads: each a zero-argument callable doing one forward + backward
def lstm_np_work(T, B, H, peephole, dtype, rng):
    lstm = ln.LSTM(H, H, peephole=peephole, dtype=dtype, seed=0)
    k = 1 / np.sqrt(H)                                       # the init scale: larger (H, H) peepholes make
    for _, value, _ in lstm.named_parameters():             # "full" chaotic; random biases and peepholes too
        value[...] = rng.uniform(-k, k, size=value.shape)
    x = rng.normal(size=(T, B, H)).astype(dtype)
    dy = rng.normal(size=(T, B, H)).astype(dtype)

    def run():
        y, _ = lstm.forward(x)
        dx, _ = lstm.backward(dy)
        return y, dx
    return lstm, x, dy, run


def gemm_work(T, B, H, dtype, rng):
    """The big-GEMM reference: X (T·B, D) @ W (D, 4H) into a preallocated output."""
    X = rng.normal(size=(T * B, H)).astype(dtype)
    W = rng.normal(size=(H, 4 * H)).astype(dtype)
    out = np.empty((T * B, 4 * H), dtype)
    return lambda: np.matmul(X, W, out=out), 2 * T * B * H * 4 * H


def floor_work(T, B, H, peephole, dtype, rng):
    """The GEMMs alone that one lstm_np forward + backward performs, with the same shapes, count and operand
    layouts as lstm.py / cell.py and no elementwise work at all: the least time this schedule of GEMMs can
    take on this BLAS, so "floor/torch" above 1 means PyTorch is out of reach for it. (It is a little
    lower than lstm_np's GEMMs could ever be: its buffers are preallocated and stay warm in cache, and the
    x-projection writes into a preallocated output where lstm.py allocates one per call.)

        forward:   X (T·B, D) @ W_x (D, 4H) once;  per step h_{t-1} (B, H) @ W_h (H, 4H)
                   "full" adds per step c_{t-1} @ W_c (H, 3H) and c_t @ W_co (H, H)
        backward:  per step ∂L/∂a (B, 4H) @ W_hᵀ (4H, H)   ("full": ∂L/∂a_o @ W_coᵀ, ∂L/∂a_ifc @ W_cᵀ)
                   then Xᵀ @ dA, H_prevᵀ @ dA ("full": C_prevᵀ @ dA_ifc, Cᵀ @ dA_o) and dA @ W_xᵀ once each
    """
    def a(*shape):
        return rng.normal(size=shape).astype(dtype)
    N, D = T * B, H
    X, W_x, W_h, W_hT = a(N, D), a(D, 4 * H), a(H, 4 * H), a(4 * H, H)
    S, dA, out, h, dh = a(N, H), a(N, 4 * H), a(N, 4 * H), a(B, H), a(B, H)
    step_f, step_b = a(B, 4 * H), a(B, 4 * H)
    full = peephole == "full"
    if full:
        W_c, W_co, W_cT, W_coT, tmp = a(H, 3 * H), a(H, H), a(3 * H, H), a(H, H), a(B, H)

    def run():
        np.matmul(X, W_x, out=out)
        for _ in range(T):
            np.matmul(h, W_h, out=step_f)
            if full:
                np.matmul(h, W_c, out=step_f[:, :3 * H])
                np.matmul(h, W_co, out=tmp)
        for _ in range(T):
            if full:
                np.matmul(step_b[:, 3 * H:], W_coT, out=tmp)
            np.matmul(step_b, W_hT, out=dh)
            if full:
                np.matmul(step_b[:, :3 * H], W_cT, out=tmp)
        X.T @ dA
        S.T @ dA
        if full:
            S.T @ dA[:, :3 * H]
            S.T @ dA[:, 3 * H:]
        dA @ W_x.T
    return run


class TorchPeepholeLSTM:
    """The documented peephole equations step by step in torch autograd, with lstm_np's weights.

    Storage as lstm_np (gates [i, f, c~, o] along the last axis, x @ W orientation) so the weights copy
    over unchanged and y can be compared.
    """

    def __init__(self, cell, tdtype):
        def param(name):
            return torch.tensor(cell.params[name], dtype=tdtype, requires_grad=True)
        self.peephole, self.H = cell.peephole, cell.hidden_size
        self.W_x, self.W_h, self.b = param("W_x"), param("W_h"), param("b")
        if self.peephole == "full":
            self.W_c, self.W_co = param("W_c"), param("W_co")            # (H, 3H) c_{t-1} -> [i, f, c~]; (H, H) c_t -> o
        else:                                                              # (H,) vectors on i, f, o
            p_c = cell.params["p_c"]
            self.p_ci, self.p_cf, self.p_co = (torch.tensor(p, dtype=tdtype, requires_grad=True)
                                               for p in (p_c[:self.H], p_c[self.H:], cell.params["p_co"]))

    def __call__(self, x):
        T, B, _ = x.shape
        xp = x @ self.W_x + self.b                                         # x-projection of all steps at once
        h = torch.zeros(B, self.H, dtype=x.dtype)
        c = torch.zeros(B, self.H, dtype=x.dtype)
        ys = []
        for t in range(T):
            z_i, z_f, z_c, z_o = (xp[t] + h @ self.W_h).chunk(4, dim=1)
            if self.peephole == "full":
                p_i, p_f, p_c = (c @ self.W_c).chunk(3, dim=1)
                i, f = torch.sigmoid(z_i + p_i), torch.sigmoid(z_f + p_f)
                g = torch.tanh(z_c + p_c)
            else:
                i, f = torch.sigmoid(z_i + self.p_ci * c), torch.sigmoid(z_f + self.p_cf * c)
                g = torch.tanh(z_c)
            c = f * c + i * g
            o = torch.sigmoid(z_o + (c @ self.W_co if self.peephole == "full" else self.p_co * c))
            h = o * torch.tanh(c)
            ys.append(h)
        return torch.stack(ys)


def torch_work(lstm, x, dy, dtype):
    """torch's forward + backward of the same problem with the same weights; returns (y, dx) like lstm_np's."""
    tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]
    cell = lstm.cell()
    xt = torch.tensor(x, requires_grad=True)
    dyt = torch.tensor(dy)
    if cell.peephole == "none":
        model = torch.nn.LSTM(cell.input_size, cell.hidden_size).to(tdtype)
        with torch.no_grad():                                              # same gate order [i, f, g, o]
            model.weight_ih_l0.copy_(torch.from_numpy(cell.params["W_x"].T.copy()))
            model.weight_hh_l0.copy_(torch.from_numpy(cell.params["W_h"].T.copy()))
            model.bias_ih_l0.copy_(torch.from_numpy(cell.params["b"]))
            model.bias_hh_l0.zero_()

        def forward():
            return model(xt)[0]
    else:
        forward = TorchPeepholeLSTM(cell, tdtype).__call__
        forward = (lambda f=forward: f(xt))

    def run():
        xt.grad = None
        y = forward()
        y.backward(dyt)
        return y.detach().numpy(), xt.grad.numpy()
    return run


# ---------------------------------------------------------------------------------------------------------
def bench_row(T, B, H, peephole, dtype, rounds, budget):
    rng = np.random.default_rng(0)
    lstm, x, dy, np_run = lstm_np_work(T, B, H, peephole, dtype, rng)
    gemm_run, gemm_fl = gemm_work(T, B, H, dtype, rng)
    works = {"lstm_np": np_run, "gemm": gemm_run, "floor": floor_work(T, B, H, peephole, dtype, rng)}
    row = {"T": T, "B": B, "D": H, "H": H, "peephole": peephole, "dtype": np.dtype(dtype).name}
    if torch is not None:
        works["torch"] = torch_work(lstm, x, dy, dtype)
        (y_np, dx_np), (y_t, dx_t) = works["lstm_np"](), works["torch"]()
        row["torch_max_abs_diff"] = {"y": float(np.abs(y_np - y_t).max()), "dx": float(np.abs(dx_np - dx_t).max())}
        tol = 1e-3 if np.dtype(dtype) == np.float32 else 1e-9                # on values of order 1
        row["torch_agrees"] = bool(max(row["torch_max_abs_diff"].values()) <= tol * max(1.0, np.abs(dx_np).max()))
    timing, rounds = time_interleaved(works, rounds, budget)
    med = {name: m for name, (m, _) in timing.items()}
    flops = gemm_flops(T, B, H, H, peephole)
    row.update(rounds=rounds, gflop=flops / 1e9, ms=med["lstm_np"] * 1e3, gflops=flops / med["lstm_np"] / 1e9,
               gemm_gflops=gemm_fl / med["gemm"] / 1e9)
    row["pct_gemm"] = 100 * row["gflops"] / row["gemm_gflops"]
    row["floor_ms"] = med["floor"] * 1e3
    row["noisy"] = med["floor"] > med["lstm_np"]                          # the floor does strictly less work
    if torch is not None:
        row.update(torch_ms=med["torch"] * 1e3, torch_impl="nn.LSTM" if peephole == "none" else "autograd steps",
                   ratio=med["lstm_np"] / med["torch"], floor_ratio=med["floor"] / med["torch"])
    row["min_ms"] = {name: mn * 1e3 for name, (_, mn) in timing.items()}   # the least disturbed call of each
    return row


HEADER = (f"{'dtype':7} {'T':>3} {'B':>3} {'H':>4} {'peephole':9} {'ms':>9} {'GFLOP/s':>8} {'GEMM GF/s':>10}"
          f" {'%GEMM':>6} {'floor ms':>9} {'torch ms':>9} {'np/torch':>9} {'floor/torch':>12}  torch impl")


def format_row(r):
    line = (f"{r['dtype']:7} {r['T']:3d} {r['B']:3d} {r['H']:4d} {r['peephole']:9} {r['ms']:9.2f} "
            f"{r['gflops']:8.1f} {r['gemm_gflops']:10.1f} {r['pct_gemm']:5.0f}% {r['floor_ms']:9.2f}")
    if "torch_ms" in r:
        line += f" {r['torch_ms']:9.2f} {r['ratio']:8.2f}x {r['floor_ratio']:11.2f}x  {r['torch_impl']}"
        if r["noisy"]:
            line += "  (noisy: floor above the total)"
        if not r["torch_agrees"]:
            line += f"  (DIFFERENT RESULTS: max |Δ| {r['torch_max_abs_diff']})"
    return line


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"only sizes {QUICK_SIZES} and 3 rounds per row (under a minute)")
    common.add_json_flag(parser, "bench_lstm")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds per row, each timing every work twice (default 8, or 3 with --quick); a "
                             "row stops early after its time budget, with at least 3 rounds")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if it imports")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for BOTH numpy's BLAS and torch (default: all cores); sets "
                             "OPENBLAS_NUM_THREADS/OMP_NUM_THREADS/MKL_NUM_THREADS and restarts itself so the "
                             "BLAS reads them at load. 1 gives stable ratios when other jobs load the machine")
    args = parser.parse_args()

    if args.threads is not None and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    global torch
    if args.no_torch:
        torch = None
    if torch is not None:
        torch.set_num_threads(args.threads or os.cpu_count())
    sizes = QUICK_SIZES if args.quick else SIZES
    rounds = args.rounds or (3 if args.quick else 8)
    budget = 1.0 if args.quick else 5.0                                    # seconds of rounds per row

    info = machine_info()
    blas = info["numpy_blas"]
    if isinstance(blas, dict):
        blas = blas.get("openblas configuration") or f"{blas.get('name')} {blas.get('version')}"
    torch_desc = (f"torch {info['torch']} ({info['torch_blas']}, {info['torch_threads']} threads)"
                  if torch is not None else "torch not used")
    print(f"lstm_np LSTM layer forward+backward | numpy {info['numpy']} (build: {blas}) | {torch_desc} | "
          f"{info['cores']} cores: {info['cpu']}")
    if isinstance(info["threadpools"], list):
        print("BLAS at run time: " + "; ".join(f"{p['internal_api']} {p['version']} {p['architecture']}, "
                                               f"{p['num_threads']} threads" for p in info["threadpools"]))
    print("environment (the same for numpy and torch): "
          + (", ".join(f"{k}={v}" for k, v in info["env"].items()) or "no OPENBLAS_*/OMP_*/MKL_* variables set")
          + " | load average before: " + " ".join(f"{x:.2f}" for x in info["load_average"] or []))
    print("GFLOP/s = analytic GEMM flops of fwd+bwd / median time; %GEMM = that / numpy's rate on one "
          "(T·B, D) x (D, 4H) GEMM timed in the same rounds; floor = lstm_np's GEMM calls alone (no "
          "elementwise work), the least time this GEMM schedule can take")
    print(HEADER)
    rows = []
    start = time.perf_counter()
    for dtype in DTYPES:
        for T, B, H in sizes:
            for peephole in PEEPHOLES:
                row = bench_row(T, B, H, peephole, dtype, rounds, budget)
                rows.append(row)
                print(format_row(row), flush=True)
    info["seconds"] = round(time.perf_counter() - start, 1)
    info["load_average_after"] = common.load_average()
    common.write_json(args.json, {"machine": info, "quick": args.quick, "rows": rows})
    print(f"{info['seconds']:.0f} s, load average after: "
          + " ".join(f"{x:.2f}" for x in info["load_average_after"] or []) + f"; wrote {args.json}")


if __name__ == "__main__":
    main()
