"""The one place that compiles kernels: `jit` applies dlcourse's Numba flags (kernels.config) to a function."""
import os

import numba
from numba import prange  # noqa: F401  (the kernels import prange from here, beside jit)

from .config import FASTMATH, THREADING_LAYERS

if not {'NUMBA_THREADING_LAYER', 'NUMBA_THREADING_LAYER_PRIORITY'} & set(os.environ):   # unless the user chose
    numba.config.THREADING_LAYER_PRIORITY = THREADING_LAYERS


def jit(parallel=False):  # run `prange` loops on several threads?
    """`numba.njit` with dlcourse's flags: cached, fast-math that keeps NaN/inf semantics, optionally parallel (not under
    NUMBA_BOUNDSCHECK=1: Numba checks indices only outside parallel regions)"""
    parallel = bool(parallel) and not numba.config.BOUNDSCHECK
    return numba.njit(cache=True, parallel=parallel, fastmath=set(FASTMATH), nogil=True)
