"""Timing shared by the benchmarks: workloads measured side by side, in interleaved rounds."""
import time

import numpy as np


def time_interleaved(works, rounds, budget, pause=0.1, calls=2):
    """Median and minimum seconds per call of each work, measured in rounds so that machine drift hits all
    works alike. In a round each work runs as a block: a short pause, one untimed settling call, then `calls`
    timed calls. The pause and the settling call matter: OpenBLAS and torch's OpenMP keep their worker
    threads spinning for a while after each call, so a call that directly follows the OTHER library's
    competes with its spinning threads for the cores (measured here: 1.3-2.7x slower on 2 cores), which
    is not what a user running one of them sees. Stops after `budget` seconds (at least 3 rounds)."""
    times = {name: [] for name in works}
    start = time.perf_counter()
    for r in range(rounds):
        for name in (list(works) if r % 2 == 0 else list(works)[::-1]):  # alternate who goes first
            time.sleep(pause)
            works[name]()
            for _ in range(calls):
                t0 = time.perf_counter()
                works[name]()
                times[name].append(time.perf_counter() - t0)
        if r >= 2 and time.perf_counter() - start > budget:
            break
    return {name: (float(np.median(v)), float(np.min(v))) for name, v in times.items()}, r + 1
