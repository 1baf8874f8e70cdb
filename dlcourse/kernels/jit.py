"""The one place that compiles kernels: `jit` applies dlcourse's Numba flags (kernels.config) to a function, and the
threading layer is chosen here, before the first parallel kernel runs."""
import ctypes
import os

import numba
from numba import prange  # noqa: F401  (the kernels import prange from here, beside jit)

from .config import FASTMATH, THREADING_LAYERS


def _load_pip_tbb():
    """Load the TBB library of the `tbb` package, if installed, so that Numba's TBB layer finds it: pip puts it in the
    environment's lib/ folder, where the dynamic loader does not look (once loaded, the loader finds it by name)"""
    try:
        from importlib.metadata import PackageNotFoundError, files
        try: lib = next((f for f in files('tbb') or () if f.name == 'libtbb.so.12'), None)
        except PackageNotFoundError: return
        if lib is not None: ctypes.CDLL(str(lib.locate()), mode=ctypes.RTLD_GLOBAL)
    except OSError: pass                          # a broken install: Numba falls back to the next layer


_load_pip_tbb()
if not {'NUMBA_THREADING_LAYER', 'NUMBA_THREADING_LAYER_PRIORITY'} & set(os.environ):   # unless the user chose
    numba.config.THREADING_LAYER_PRIORITY = THREADING_LAYERS


def jit(parallel=False,  # run `prange` loops on several threads?
        inline=False):   # inline into every caller when Numba compiles it (small scalar functions called in loops)?
    """`numba.njit` with dlcourse's flags: cached, fast-math that keeps NaN/inf semantics, NumPy's error model (a float
    division by zero gives inf or NaN, as in NumPy, instead of raising: without that check in every division, loops that
    divide vectorise, e.g. tanh and the sigmoid ten times faster), optionally parallel (not under NUMBA_BOUNDSCHECK=1:
    Numba checks indices only outside parallel regions). `inline`: the function's body is copied into each caller, where
    constant arguments (an activation code) select one branch and the loop around it vectorises"""
    parallel = bool(parallel) and not numba.config.BOUNDSCHECK
    return numba.njit(cache=True, parallel=parallel, fastmath=set(FASTMATH), nogil=True, error_model='numpy',
                      inline='always' if inline else 'never')
