"""The one place that compiles kernels: `jit` applies dlcourse's Numba flags (kernels.config) to a function, and the
threading layer is chosen here, before the first parallel kernel runs.

What importing dlcourse does to Numba, for the rest of the process (and nothing else: no other setting of
`numba.config`, no environment variable):

1. it loads the TBB library of pip's `tbb` package (`libtbb.so.12`, if installed) into the process, globally, so that
   Numba's TBB threading layer can find it;
2. it sets `numba.config.THREADING_LAYER_PRIORITY` to `config.THREADING_LAYERS` (TBB first), unless the environment sets
   NUMBA_THREADING_LAYER or NUMBA_THREADING_LAYER_PRIORITY, which then win. Other code that uses Numba's parallel loops
   in the same process gets the same priority (Numba has one thread pool per process).

(Importing dlcourse also restarts NumPy's OpenBLAS workers with a short spin after each product: `engine.matmul`.)

Compiling is the cold start's cost (a fresh install's first training step), so each kernel is compiled once per dtype:
calls pass int64 where a literal or a parallel loop's unsigned index would make Numba compile a second version
(tests/test_cold_start.py counts the compilations), and small arrays skip the parallel versions of the elementwise
kernels altogether (`apply_act`, `apply_grad` and `sgd_apply` choose).

Where the package ships a kernel version compiled ahead of time for this CPU (`prebuilt`: x86-64 with AVX2 or AVX-512,
the Numba and Python it was built with), the kernel loads it instead of compiling, when Numba's disk cache has nothing:
a fresh install's first training runs compile nothing. Everything else compiles here, once, as follows.

Compiled kernels are cached on disk where Numba finds a writable place: the `__pycache__` folders of the package,
NUMBA_CACHE_DIR, or the user's cache folder. Where none is writable (a read-only installation with a read-only home: a
container, Nix, a locked-down lab), the kernels are compiled without a cache, once in every new process, and one warning
says so; set NUMBA_CACHE_DIR to a writable folder to keep them.

Several processes may fill one cache at once (two training runs, or `engine.ahead`'s helper process compiling the
second half of a first training step): Numba writes a function's index and its data files without a lock, so two
processes saving different versions of one function can leave an index entry that names the other's machine code. Each
kernel's cache is therefore read under a shared and written under an exclusive lock on a file `dlcourse-cache.lock` in
the cache's folder (`fcntl.flock`; where locking is impossible, Numba's own unlocked files as before)."""
import ctypes
import os
import warnings
from contextlib import contextmanager

try: import fcntl
except ImportError: fcntl = None                 # not POSIX: Numba's unlocked cache, as before

import numba
from numba import prange  # noqa: F401  (the kernels import prange from here, beside jit)

from . import prebuilt
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


class CacheWarning(UserWarning):
    "Numba cannot cache dlcourse's compiled kernels on disk here: they are compiled in every new process"


_uncached = []    # the kernels compiled without a disk cache (warned about once, at the first)


def _without_cache(fn, options, error):
    "`fn` compiled without a disk cache, after one warning for the whole package"
    if not _uncached:
        warnings.warn(f"dlcourse: Numba cannot cache compiled kernels here ({error}); they are compiled again in every "
                      "new process: set NUMBA_CACHE_DIR to a writable folder to keep them", CacheWarning, stacklevel=4)
    _uncached.append(fn.__qualname__)
    disp = numba.njit(cache=False, **options)(fn)
    prebuilt.attach(disp)                        # the shipped machine code needs no writable cache
    return disp


@contextmanager
def _flocked(path, how):
    "Hold `fcntl.flock(how)` on the file `path` (created if missing); no lock where it cannot be opened"
    try: fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        try: fd = os.open(path, os.O_RDONLY)     # another user's lock file in a shared cache: flock needs no write access
        except OSError: fd = None
    try:
        if fd is not None: fcntl.flock(fd, how)
        yield
    finally:
        if fd is not None: os.close(fd)          # closing releases the lock


def _lock_cache(disp):
    "Read `disp`'s disk cache under a shared lock and write it under an exclusive one (see the module's docstring)"
    file = getattr(getattr(disp, '_cache', None), '_cache_file', None)      # Numba's IndexDataCacheFile
    folder = getattr(file, '_cache_path', None)
    if fcntl is None or folder is None or not hasattr(file, 'save') or not hasattr(file, 'load'): return
    lock, save, load = os.path.join(folder, 'dlcourse-cache.lock'), file.save, file.load

    def locked_save(key, data):
        with _flocked(lock, fcntl.LOCK_EX): return save(key, data)

    def locked_load(key):
        with _flocked(lock, fcntl.LOCK_SH): return load(key)
    file.save, file.load = locked_save, locked_load


# Called as compile_hook(dispatcher, argument types) before a kernel compiles a new version (nothing by default);
# engine.ahead sets it while a helper process compiles ahead, to wait for a version that process is compiling.
compile_hook = None


def _hook_compile(disp):
    "Let `compile_hook` see each compilation of `disp` first (its own compilations and those of kernels that call it)"
    compile = disp.compile

    def hooked(sig):
        if compile_hook is not None: compile_hook(disp, sig)
        return compile(sig)
    disp.compile = hooked


def jit(parallel=False,  # run `prange` loops on several threads?
        inline=False,    # inline into every caller when Numba compiles it (small scalar functions called in loops)?
        exact=False):    # no fast-math: every operation rounded as written (a kernel that must agree with NumPy to the bit)
    """`numba.njit` with dlcourse's flags: cached, fast-math that keeps NaN/inf semantics, NumPy's error model (a float
    division by zero gives inf or NaN, as in NumPy, instead of raising: without that check in every division, loops that
    divide vectorise, e.g. tanh and the sigmoid ten times faster), optionally parallel (not under NUMBA_BOUNDSCHECK=1:
    Numba checks indices only outside parallel regions); `exact` turns fast-math off. `inline`: the function's body is copied into each caller, where
    constant arguments (an activation code) select one branch and the loop around it vectorises. Where Numba finds no
    writable place for its cache, the function is compiled without one (`CacheWarning`, once)"""
    options = dict(parallel=bool(parallel) and not numba.config.BOUNDSCHECK, fastmath=False if exact else set(FASTMATH), nogil=True,
                   error_model='numpy', inline='always' if inline else 'never')

    def compile(fn):
        try: disp = numba.njit(cache=True, **options)(fn)
        except RuntimeError as e:                 # "cannot cache function ...: no locator available for file ..."
            return _without_cache(fn, options, e)
        if hasattr(disp, 'compile'):              # not under NUMBA_DISABLE_JIT=1 (a plain function)
            _lock_cache(disp)
            _hook_compile(disp)
            prebuilt.attach(disp)
        return disp
    return compile
