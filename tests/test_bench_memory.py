"""benchmarks/bench_memory.py counts the BPTT cache right: checked against a count from the documented layout."""
import importlib.util
import os
import sys
import tracemalloc

import numpy as np
import pytest

import lstm_np as ln

_BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, _BENCHMARKS)                     # where bench_memory.py imports common.py from, as when run
_PATH = os.path.join(_BENCHMARKS, "bench_memory.py")
_spec = importlib.util.spec_from_file_location("bench_memory", _PATH)
bm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bm)


def layout_bytes(T, B, H, itemsize):
    """The cache of one layer from lstm.py's docstring, counted by hand: A (T, 4, B, H), S (2, T+1, B, H),
    TC (T, B, H) in the layer's dtype, and the reverse-time index map (T, B) and batch index (B,) as int64."""
    return itemsize * (T * 4 * B * H + 2 * (T + 1) * B * H + T * B * H) + 8 * (T * B + B)


@pytest.fixture
def traced():
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start()
    yield
    if not was:
        tracemalloc.stop()


@pytest.mark.parametrize("peephole", ["none", "diagonal", "full"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cache_count_matches_the_layout(peephole, dtype):
    T, B, D, H = 3, 2, 5, 4                                          # D != H: x is told apart from the states
    lstm = ln.LSTM(D, H, peephole=peephole, dtype=dtype)
    x = np.random.default_rng(0).normal(size=(T, B, D)).astype(dtype)
    lstm.forward(x)
    c = bm.cache_breakdown(lstm, x, T, B, D, H)
    itemsize = np.dtype(dtype).itemsize
    assert c["bytes"] == layout_bytes(T, B, H, itemsize)
    assert sum(c["parts"].values()) == c["bytes"]
    assert c["parts"]["gates i,f,c~,o (A)"] == 4 * T * B * H * itemsize
    assert c["x_is_callers"] and c["x_bytes"] == x.nbytes


def test_a_copied_input_is_counted_in_the_cache():
    T, B, D, H = 3, 2, 5, 4
    lstm = ln.LSTM(D, H, dtype=np.float64)
    x = np.ones((T, B, D), np.float32)                               # converted, so the cache owns its copy
    lstm.forward(x)
    c = bm.cache_breakdown(lstm, x, T, B, D, H)
    assert not c["x_is_callers"]
    assert c["bytes"] == layout_bytes(T, B, H, 8) + T * B * D * 8


def test_views_count_once_and_overlapping_owners_are_refused():
    a, b = np.zeros(10), np.zeros(3)
    owners = bm.distinct_buffers([("a", a[2:5]), ("b", b), ("a2", a[::2].reshape(5, 1)), ("a3", a)])
    assert [(name, buf.nbytes) for name, buf in owners] == [("a", 80), ("b", 24)]
    foreign = np.frombuffer(memoryview(a))                           # a's memory, its base not an ndarray
    with pytest.raises(RuntimeError, match="share memory"):
        bm.distinct_buffers([("a", a), ("f", foreign)])


def test_tracemalloc_sees_the_steps_memory(traced):
    bm.check_tracemalloc_sees_numpy()
    # big enough that one stray array of a value per (step, row, unit) (~41 KB) exceeds the 1% + 4 KB slack
    r = bm.lstm_row(20, 8, 32, "full", np.float64)
    assert r["held_matches_cache"]                                   # what stays allocated is the cache
    assert r["cache_bytes"] == layout_bytes(20, 8, 32, 8)
    assert r["peak_bytes"] > r["cache_bytes"]
