"""Memory benchmark: the BPTT cache of one LSTM layer and the peak memory of one training step.

For one LSTM layer (unidirectional, D = H) at the sizes of bench_lstm.py, every peephole and float32/float64:

  * cache: the arrays `forward` keeps in `lstm._cache` for `backward`. Every array in it is followed to the
    array that owns its memory (`.base`), so a view is never counted twice, and no two owners may share
    memory (checked with np.shares_memory). The names of the parts are the ones lstm.py gives them, read
    from its source (the lines `... = self._cache` in LSTM.backward and `... = cache` in
    LSTM._backward_one). The layer's input x is part of the cache, but it is the caller's array (checked),
    so it is reported apart ("x/unit") and is not in "cache".
  * peak: the most memory allocated at any moment of forward + backward, above the memory held just before
    the call, measured with tracemalloc. numpy reports each data buffer it allocates to tracemalloc, in its
    own domain, and get_traced_memory() counts every domain. This is checked at start: an 8 MB np.empty must
    add 8 MB to the traced total, or the script stops. BLAS work buffers are not numpy arrays and are not
    counted, here or for torch.
    Each row first runs one call on a throwaway layer to warm up numpy, BLAS and Python. Then it builds a
    new layer and its x and dy, and takes the baseline. A call keeps y until backward has returned dx, as a
    loop that computes the loss from y does, and then drops both. "peak" is the first call (nothing cached yet).
    "held" is what stays allocated after that call, and it must equal "cache" (checked, printed if not).
    "steady" is the peak of the next call above the same baseline, while the previous call's cache is still
    held when it starts (LSTM.forward drops it once the new input is validated): what every step of a
    training loop after the first one needs.
  * /unit: bytes / (T·B·H·itemsize), that is, values per (step, batch row, hidden unit) in the layer's
    dtype. The cache's parts are split the same way: gates A (T, 4, B, H) = 4, h_t and c_t for t = 0..T in
    S (2, T+1, B, H) = (T+1)/T each, tanh(c_t) TC (T, B, H) = 1, and a few int64 index arrays.
  * params+grads: the parameters and their gradient buffers, for scale (they are in the baseline).
  * torch (when it imports; it is never a dependency of lstm_np), peephole "none" only, with torch.nn.LSTM
    on CPU. torch's CPU allocator does not report to tracemalloc. torch.profiler(profile_memory=True)
    records one event per allocation and free made through it, with a timestamp. The peak is the largest
    running sum of those sizes during one forward + backward, after a warm-up call. The parameter gradients
    already exist, as in lstm_np, and x.grad is cleared before the call, like lstm_np's new dx. This also
    counts oneDNN's workspace and scratchpad, which nn.LSTM's float32 CPU kernel gets from the same
    allocator. In float64, nn.LSTM does not use oneDNN. It runs torch's own step-by-step kernel. A
    known 8 MB torch.empty is checked to show up first, and torch is skipped if it does not. torch's number,
    like tracemalloc's, is memory allocated, not memory touched. oneDNN allocates a larger workspace than
    it writes: checked once with the process's peak RSS at (50, 64, 512) float32, torch's touched peak was
    about 19 units where the allocator count was about 26, while lstm_np's two counts agreed (both about 19).

One seq2seq training step (zero_grad, loss, backward, clip_grad_norm, Adam step) for the representative
model of bench_seq2seq.py, measured with tracemalloc in the same way: peak (first step of a new model,
after a warm-up model), held between steps, steady peak, and the bytes of parameters, grads and Adam's
two moment buffers.

    python benchmarks/bench_memory.py                   # everything, well under 2 minutes
    python benchmarks/bench_memory.py --quick           # two sizes, one seq2seq model, no torch float64
    python benchmarks/bench_memory.py --json out.json   # default benchmarks/results/bench_memory.json
"""
import argparse
import ast
import gc
import inspect
import os
import platform
import textwrap
import time
import tracemalloc

import numpy as np
from threadpoolctl import threadpool_limits

import common  # benchmarks/common.py, next to this script
import lstm_np as ln

torch = None                                                         # imported by main(), not by the tests

SIZES = [(50, 32, 128), (50, 32, 256), (50, 64, 512), (20, 1, 64)]  # (T, B, D = H), as bench_lstm.py
QUICK_SIZES = [(50, 32, 256), (20, 1, 64)]
PEEPHOLES = ("none", "diagonal", "full")
DTYPES = (np.float32, np.float64)
SEQ2SEQ = dict(V=64, E=64, H=256, B=64, S=20, T=20)                  # bench_seq2seq.py's representative model
MB = 1e6

# What each named part of the cache holds, keyed by the names lstm.py uses (read by `cache_names`). The shapes
# are checked against the arrays, so the description fails loudly rather than goes stale.
PARTS = {
    "A": ("gates i,f,c~,o", lambda T, B, D, H: (T, 4, B, H)),
    "S": ("h_t, c_t (t=0..T)", lambda T, B, D, H: (2, T + 1, B, H)),
    "TC": ("tanh(c_t)", lambda T, B, D, H: (T, B, H)),
    "x": ("input x_t", lambda T, B, D, H: (T, B, D)),
    "rev": ("reverse-time index map, int64", lambda T, B, D, H: (T, B)),
    "cols": ("batch index, int64", lambda T, B, D, H: (B,)),
}


# ---------------------------------------------------------------------------------------------------------
# tracemalloc
def check_tracemalloc_sees_numpy():
    """Traced bytes added by an 8 MB np.empty. Raises if tracemalloc does not see numpy's buffers, since then
    every peak below would be meaningless."""
    n = 1_000_000
    before = tracemalloc.get_traced_memory()[0]
    a = np.empty(n, np.float64)
    seen = tracemalloc.get_traced_memory()[0] - before
    del a
    if not close_to(seen, 8 * n):
        raise RuntimeError(f"tracemalloc saw {seen} bytes for an 8,000,000-byte numpy array: it does not "
                           "trace numpy's data buffers here, so the peaks cannot be measured this way")
    return seen


def close_to(seen, nbytes):
    return abs(seen - nbytes) <= 4096                                # plus the array object, about 100 bytes


def measure_calls(make, call):
    """Peak traced bytes of `call(obj)` above the baseline, on a fresh `obj = make()` after a warm-up call
    on a throwaway one: (peak of the first call, bytes held after it, peak of the second call), with
    both peaks above the same baseline (taken with obj and its inputs in place, before any call)."""
    call(make())                                                     # warm-up (then garbage)
    gc.collect()
    obj = make()
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    call(obj)
    peak = tracemalloc.get_traced_memory()[1] - base
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.reset_peak()
    call(obj)
    steady = tracemalloc.get_traced_memory()[1] - base
    return obj, peak, held, steady


# ---------------------------------------------------------------------------------------------------------
# the BPTT cache
def _assign_target(func, value_src):
    """The target of the assignment `<target> = <value_src>` in func's source, as a nested tuple of names."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and ast.unparse(node.value) == value_src:
            def names(t):
                return tuple(names(e) for e in t.elts) if isinstance(t, ast.Tuple) else t.id
            return names(node.targets[0])
    raise RuntimeError(f"no `... = {value_src}` in {func.__qualname__}: lstm.py changed, update bench_memory.py")


def cache_names():
    """The names lstm.py gives the cache's parts: (outer, per_layer), e.g. ('caches', 'drop_masks', ...) and
    ('x', 'A', 'S', 'TC'), read from the unpacking in LSTM.backward and LSTM._backward_one."""
    return _assign_target(ln.LSTM.backward, "self._cache"), _assign_target(ln.LSTM._backward_one, "cache")


def owner(a):
    """The array that owns a's memory (a itself unless a is a view)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def all_arrays(obj):
    """Every ndarray in a nested tuple/list."""
    if isinstance(obj, np.ndarray):
        return [obj]
    return [a for item in obj for a in all_arrays(item)] if isinstance(obj, (tuple, list)) else []


def named_arrays(cache, outer, inner):
    """[(name, array)] of every ndarray in a one-layer, one-direction `lstm._cache`, named as lstm.py names
    them: `outer` for the cache's parts, `inner` for the arrays of the (only) per-layer tuple."""
    if len(cache) != len(outer):
        raise RuntimeError(f"lstm._cache has {len(cache)} parts but LSTM.backward unpacks {outer}")
    out = []
    for name, value in zip(outer, cache):
        if isinstance(value, np.ndarray):
            out.append((name, value))
        elif isinstance(value, list):                 # per layer (dropout masks) or per layer and direction
            for item in value:
                out += [(n, a) for n, a in (zip(inner, item) if isinstance(item, tuple) else [(name, item)])
                        if isinstance(a, np.ndarray)]
    if len(out) != len(all_arrays(cache)):            # an array nested where this walk does not look
        raise RuntimeError("lstm._cache holds arrays that named_arrays does not name: update bench_memory.py")
    return out


def distinct_buffers(arrays):
    """[(path, owner)] keeping the first path of each distinct memory owner; raises if two distinct owners
    overlap in memory (their bytes would be counted twice)."""
    seen = {}
    for path, a in arrays:
        seen.setdefault(id(owner(a)), (path, owner(a)))
    out = list(seen.values())
    for i, (p, a) in enumerate(out):
        for q, b in out[i + 1:]:
            if np.shares_memory(a, b):
                raise RuntimeError(f"cache parts {p} and {q} share memory but have different owners")
    return out


def cache_breakdown(lstm, x, T, B, D, H):
    """The BPTT cache of a one-layer LSTM after forward: {"bytes", "x_bytes", "x_is_callers", "parts"}, parts
    being {label: bytes}; x is left out of "bytes" (it is the caller's array when x_is_callers)."""
    outer, inner = cache_names()
    if lstm.num_layers * lstm.num_directions != 1:
        raise ValueError("cache_breakdown reads a one-layer, one-direction LSTM")
    parts, x_bytes, x_is_callers, total = {}, 0, False, 0
    for path, buf in distinct_buffers(named_arrays(lstm._cache, outer, inner)):
        if path in PARTS:
            want = PARTS[path][1](T, B, D, H)
            if buf.shape != want:
                raise RuntimeError(f"cache part {path} has shape {buf.shape}, expected {want}: update PARTS")
        if path == "x":
            x_bytes, x_is_callers = buf.nbytes, bool(np.shares_memory(buf, x))
            if x_is_callers:
                continue
        total += buf.nbytes
        if path == "S":                                              # S[0] holds h_t, S[1] holds c_t
            parts["h_t (S[0])"] = parts["c_t (S[1])"] = buf.nbytes // 2
        else:
            desc = PARTS[path][0] if path in PARTS else f"{buf.dtype}{list(buf.shape)}"
            parts[f"{desc} ({path})"] = buf.nbytes
    return {"bytes": total, "x_bytes": x_bytes, "x_is_callers": x_is_callers, "parts": parts}


# ---------------------------------------------------------------------------------------------------------
# one LSTM layer
def lstm_row(T, B, H, peephole, dtype):
    D = H
    rng = np.random.default_rng(0)
    x = rng.normal(size=(T, B, D)).astype(dtype)
    dy = rng.normal(size=(T, B, H)).astype(dtype)

    def make():
        return ln.LSTM(D, H, peephole=peephole, dtype=dtype, seed=0)

    def call(lstm):
        y, _ = lstm.forward(x)                                       # y lives through the backward, as in a
        dx, _ = lstm.backward(dy)                                    # loop that computed the loss from it
        return y, dx

    lstm, peak, held, steady = measure_calls(make, call)
    cache = cache_breakdown(lstm, x, T, B, D, H)
    unit = T * B * H * np.dtype(dtype).itemsize
    params = sum(v.nbytes + g.nbytes for _, v, g in lstm.named_parameters())
    return {
        "T": T, "B": B, "D": D, "H": H, "peephole": peephole, "dtype": np.dtype(dtype).name, "unit_bytes": unit,
        "cache_bytes": cache["bytes"], "cache_per_unit": cache["bytes"] / unit,
        "cache_parts_per_unit": {k: v / unit for k, v in cache["parts"].items()},
        "x_bytes": cache["x_bytes"], "x_per_unit": cache["x_bytes"] / unit, "x_is_callers": cache["x_is_callers"],
        "peak_bytes": peak, "peak_per_unit": peak / unit,
        "held_bytes": held, "held_matches_cache": abs(held - cache["bytes"]) <= 0.01 * cache["bytes"] + 4096,
        "steady_peak_bytes": steady, "steady_peak_per_unit": steady / unit,
        "params_grads_bytes": params,
    }


# ---------------------------------------------------------------------------------------------------------
# torch
def torch_alloc_peak(fn):
    """Peak of the running sum of CPU allocations and frees during fn(), from torch.profiler's memory events
    (bytes allocated through torch's allocator; blocks that existed before are not in the sum)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = []

    def walk(e):
        if str(e.tag).endswith("Allocation") and str(e.extra_fields.device) == "cpu":
            events.append((e.start_time_ns, e.extra_fields.alloc_size))
        for child in e.children:
            walk(child)
    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    events.sort()
    running = np.cumsum([size for _, size in events]) if events else np.zeros(1)
    return int(max(running.max(), 0))


def check_torch_profiler():
    """None if torch.profiler reports a known 8 MB allocation, else why not (torch is then skipped)."""
    n = 2_000_000
    try:
        seen = torch_alloc_peak(lambda: torch.empty(n, dtype=torch.float32))
    except Exception as exc:                                         # the event-tree API is marked experimental
        return f"torch.profiler's memory events are unavailable ({exc.__class__.__name__}: {exc})"
    if not close_to(seen, 4 * n):
        return f"torch.profiler reported {seen} bytes for an 8,000,000-byte tensor"
    return None


def torch_row(T, B, H, dtype):
    tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]
    torch.manual_seed(0)
    model = torch.nn.LSTM(H, H).to(tdtype)
    x = torch.randn(T, B, H, dtype=tdtype, requires_grad=True)
    dy = torch.randn(T, B, H, dtype=tdtype)

    def call():
        x.grad = None                                                # dx is new each call, as lstm_np's
        y, _ = model(x)
        y.backward(dy)
    call()                                                           # warm-up; creates the parameter grads
    x.grad = None
    return torch_alloc_peak(call)


# ---------------------------------------------------------------------------------------------------------
# seq2seq
def seq2seq_row(peephole, attention):
    c = SEQ2SEQ
    rng = np.random.default_rng(0)
    src = rng.integers(4, c["V"], size=(c["B"], c["S"]))
    tgt = np.concatenate([rng.integers(4, c["V"], size=(c["B"], c["T"] - 1)), np.full((c["B"], 1), ln.EOS)], axis=1)

    def make():
        model = ln.Seq2Seq(c["V"], c["V"], embed_size=c["E"], hidden_size=c["H"], peephole=peephole,
                           attention=attention, seed=0)
        return model, ln.Adam(model.named_parameters(), lr=1e-3)

    def call(model_opt):
        model, opt = model_opt
        model.zero_grad()
        model.loss(src, tgt)
        model.backward()
        ln.clip_grad_norm(model.named_parameters(), 5.0)
        opt.step()

    (model, opt), peak, held, steady = measure_calls(make, call)
    params = sum(v.nbytes + g.nbytes for _, v, g in model.named_parameters())
    adam = sum(buf.nbytes for buf in opt._state.values())           # m and v per parameter
    return {"peephole": peephole, "attention": attention or "none", "dtype": model.dtype.name,
            "params_grads_bytes": params, "adam_state_bytes": adam,
            "peak_bytes": peak, "held_bytes": held, "steady_peak_bytes": steady}


# ---------------------------------------------------------------------------------------------------------
HEADER = (f"{'dtype':7} {'T':>3} {'B':>3} {'H':>4} {'peephole':9} {'cache MB':>9} {'cache/unit':>10} "
          f"{'x/unit':>6} {'peak MB':>8} {'peak/unit':>9} {'steady/unit':>11} {'params+grads MB':>15} "
          f"{'torch peak MB':>13} {'torch/unit':>10}")


def format_row(r):
    line = (f"{r['dtype']:7} {r['T']:3d} {r['B']:3d} {r['H']:4d} {r['peephole']:9} {r['cache_bytes'] / MB:9.2f} "
            f"{r['cache_per_unit']:10.2f} {r['x_per_unit']:6.2f} {r['peak_bytes'] / MB:8.2f} "
            f"{r['peak_per_unit']:9.2f} {r['steady_peak_per_unit']:11.2f} {r['params_grads_bytes'] / MB:15.2f}")
    if "torch_peak_bytes" in r:
        line += f" {r['torch_peak_bytes'] / MB:13.2f} {r['torch_peak_per_unit']:10.2f}"
    if not r["held_matches_cache"]:
        line += f"  (held after the call {r['held_bytes'] / MB:.2f} MB != cache)"
    if not r["x_is_callers"]:
        line += "  (x copied into the cache: counted in cache)"
    return line


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"only sizes {QUICK_SIZES}, one seq2seq model, torch in float32 only")
    common.add_json_flag(parser, "bench_memory")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if it imports")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS and torch threads (default 1: memory does not depend on it much, and it "
                             "keeps the run polite on a shared machine)")
    args = parser.parse_args()
    global torch
    if not args.no_torch:
        # torch.profiler prints a start/stop line per session, and torch warns once because the profiled call
        # frees a block allocated before profiling started (expected here): both would only clutter the table.
        # Set before torch loads; a user's own settings win.
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
        try:
            import torch
        except ImportError:
            torch = None
    start = time.perf_counter()
    tracemalloc.start()                                              # 1 frame per trace: the cheapest
    seen = check_tracemalloc_sees_numpy()
    torch_skip = None
    if torch is not None:
        torch.set_num_threads(args.threads)
        torch_skip = check_torch_profiler()
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__ if torch is not None else None, "threads": args.threads,
            "tracemalloc_bytes_for_8MB_numpy_array": seen, "torch_skipped": torch_skip}
    sizes = QUICK_SIZES if args.quick else SIZES
    torch_dtypes = (np.float32,) if args.quick else DTYPES

    print(f"lstm_np memory | numpy {np.__version__} | tracemalloc saw {seen:,} bytes for an 8,000,000-byte "
          f"array | torch: " + (torch.__version__ + (f" skipped: {torch_skip}" if torch_skip else
                                                     " nn.LSTM, profiler memory events")
                                if torch is not None else "not used"))
    print("one LSTM layer, D = H, forward + backward. /unit = bytes / (T·B·H·itemsize). cache excludes x (the "
          "caller's array). peak: first call above the baseline; steady: the next call, while the previous "
          "cache is still held")
    print(HEADER)
    rows = []
    with threadpool_limits(args.threads, user_api="blas"):
        for dtype in DTYPES:
            for T, B, H in sizes:
                for peephole in PEEPHOLES:
                    row = lstm_row(T, B, H, peephole, dtype)
                    if torch is not None and not torch_skip and peephole == "none" and dtype in torch_dtypes:
                        row["torch_peak_bytes"] = torch_row(T, B, H, dtype)
                        row["torch_peak_per_unit"] = row["torch_peak_bytes"] / row["unit_bytes"]
                    rows.append(row)
                    print(format_row(row), flush=True)

        print("\nthe cache per (step, batch row, hidden unit), by part (the same for every peephole):")
        for r in rows:
            if r["peephole"] == PEEPHOLES[0]:
                others = [o["cache_parts_per_unit"] for o in rows
                          if (o["dtype"], o["T"], o["B"], o["H"]) == (r["dtype"], r["T"], r["B"], r["H"])]
                same = all(o == r["cache_parts_per_unit"] for o in others)
                parts = ", ".join(f"{k} {v:.3g}" for k, v in r["cache_parts_per_unit"].items())
                print(f"{r['dtype']:7} {r['T']:3d} {r['B']:3d} {r['H']:4d}  {parts}"
                      + ("" if same else "  (differs between peepholes: see the JSON)"))

        c = SEQ2SEQ
        print(f"\nseq2seq training step (zero_grad, loss, backward, clip_grad_norm, Adam step): embed {c['E']}, "
              f"hidden {c['H']}, batch {c['B']}, lengths {c['S']} -> {c['T']}, vocab {c['V']}, float32")
        print(f"{'peephole':9} {'attention':9} {'params+grads MB':>15} {'Adam m,v MB':>11} {'peak MB':>8} "
              f"{'held MB':>8} {'steady MB':>9}")
        s2s = []
        for peephole, attention in ([("full", "luong")] if args.quick else
                                    [("full", "luong"), ("full", None), ("none", "luong"), ("none", None)]):
            r = seq2seq_row(peephole, attention)
            s2s.append(r)
            print(f"{r['peephole']:9} {r['attention']:9} {r['params_grads_bytes'] / MB:15.2f} "
                  f"{r['adam_state_bytes'] / MB:11.2f} {r['peak_bytes'] / MB:8.2f} {r['held_bytes'] / MB:8.2f} "
                  f"{r['steady_peak_bytes'] / MB:9.2f}", flush=True)
    tracemalloc.stop()
    info["seconds"] = round(time.perf_counter() - start, 1)
    common.write_json(args.json, {"machine": info, "quick": args.quick, "sizes": SEQ2SEQ, "lstm_rows": rows,
                                  "seq2seq_rows": s2s})
    print(f"{info['seconds']:.0f} s; wrote {args.json}")


if __name__ == "__main__":
    main()
