"""Timing shared by the single benchmarks (bench_pool.py, bench_lenet5.py); bench/run.py has its own worker processes."""
import time

import numpy as np


def median_times(a, b, repeat):
    "Median seconds per call of `a` and of `b`, after warm-up, calls interleaved so that both see the same machine load"
    for _ in range(5): a(); b()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); a(); t1 = time.perf_counter(); b(); t2 = time.perf_counter()
        times.append((t1 - t0, t2 - t1))
    return tuple(np.median(times, axis=0))
