"""Matrix products for the layers, without transposed copies: a @ b.T (forward of a fully connected layer), a @ b (its
input gradient) and a.T @ b (its weight gradient). The course's kernels take small products, where calling BLAS costs
more than the arithmetic (thread start-up, and OpenBLAS's workers competing with Numba's); BLAS takes large ones, reading
a transposed operand in place (a transposed view is a column-major matrix to BLAS); a weight gradient over a short batch
is a few rank-one updates, memory-bound, done in one pass over the gradient (`rank_update`).

Importing this module (that is, importing dlcourse) also tells NumPy's OpenBLAS to put its worker threads to sleep as
soon as a product is done (`quiet_blas_threads`). By default each worker spins for about 0.1 s after every product,
waiting for the next one, on the core that Numba's next kernel (a layout copy, batch norm, ReLU, the optimizer's step)
needs: in ResNet-18 that made a training step up to 1.5x slower. The user's own OPENBLAS_THREAD_TIMEOUT wins, and
nothing changes where NumPy's BLAS is not a pthreads OpenBLAS."""
import ctypes
import os

import numpy as np

from ..kernels import config
from ..kernels.conv import apply_gemm_nt, rank_update


def _openblas():
    "The OpenBLAS library loaded in this process (NumPy's), as a ctypes handle, or None"
    try:
        with open('/proc/self/maps') as f:
            paths = {fields[5].strip() for fields in (line.split(None, 5) for line in f) if len(fields) == 6}
    except OSError: return None                    # not Linux: NumPy's BLAS is another one there (Accelerate, MKL)
    paths = sorted(p for p in paths if 'openblas' in os.path.basename(p).lower() and '.so' in os.path.basename(p))
    for path in paths:
        try: return ctypes.CDLL(path)              # already loaded: this only returns a handle to it
        except OSError: continue
    return None


def _symbol(lib, name):
    "OpenBLAS's API function `name` as `lib` exports it (builds prefix and suffix the names), or None"
    return next((fn for full in (name, f'scipy_{name}64_', f'scipy_{name}_64', f'{name}64_', f'{name}_64')
                 if (fn := getattr(lib, full, None)) is not None), None)


def quiet_blas_threads(timeout=None):  # log2 of the cycles a worker spins before it sleeps, 4..30; None: config's
    """Restart NumPy's OpenBLAS worker threads with a short spin (OpenBLAS's OPENBLAS_THREAD_TIMEOUT, which it reads only
    when it is loaded, before dlcourse can set it). Returns what happened, for the record: 'quieted', or why not ('user'
    where OPENBLAS_THREAD_TIMEOUT is set, 'not openblas', 'not pthreads', 'one thread'). Call it when no other thread is
    in a BLAS call: it stops and restarts OpenBLAS's workers. The thread count, results and environment stay as they were."""
    timeout = config.BLAS_THREAD_TIMEOUT if timeout is None else timeout
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 4 <= timeout <= 30:
        raise ValueError(f"timeout must be an integer from 4 to 30 (OpenBLAS's range), not {timeout!r}")
    if 'OPENBLAS_THREAD_TIMEOUT' in os.environ: return 'user'
    lib = _openblas()
    if lib is None: return 'not openblas'
    parallel, threads = _symbol(lib, 'openblas_get_parallel'), _symbol(lib, 'openblas_get_num_threads')
    read_env, stop, start = (getattr(lib, n, None) for n in ('openblas_read_env', 'blas_thread_shutdown_', 'blas_thread_init'))
    if None in (parallel, threads, read_env, stop, start): return 'not openblas'
    if parallel() != 1: return 'not pthreads'    # 0: a serial build, 2: OpenMP's threads (their own spin setting)
    if threads() < 2: return 'one thread'
    os.environ['OPENBLAS_THREAD_TIMEOUT'] = str(timeout)
    try:
        read_env()                                 # OpenBLAS reads its variables again...
        stop()                                     # ...its workers stop, and start again with the new spin
        start()
    finally:
        del os.environ['OPENBLAS_THREAD_TIMEOUT']  # child processes see the environment as it was
        read_env()                                 # (the running workers keep their spin)
    return 'quieted'


BLAS_THREADS = quiet_blas_threads()   # what importing dlcourse did to OpenBLAS's threads (bench/ records it)


def _operands(a, b, out, product):  # product: 'nt' (a @ b.T), 'nn' (a @ b) or 'tn' (a.T @ b)
    """Check a product's operands before a kernel reads them (Numba does not bounds-check): `a` and `b` C-contiguous 2-D
    float32/float64 arrays of one dtype whose sizes agree, `out` (None or) a writeable C-contiguous array of the result's
    shape and dtype"""
    for name, x in (('a', a), ('b', b)) + ((('out', out),) if out is not None else ()):
        if not isinstance(x, np.ndarray): raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
        if x.dtype not in (np.float32, np.float64): raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
        if x.ndim != 2: raise ValueError(f"{name} must be 2-D, got shape {x.shape}")
        if not x.flags.c_contiguous: raise ValueError(f"{name} must be C-contiguous (np.ascontiguousarray)")
        if x.dtype != a.dtype: raise TypeError(f"{name} has dtype {x.dtype}, expected a's dtype {a.dtype}")
    (a0, a1), (b0, b1) = a.shape, b.shape
    b_shape, out_shape = {'nt': ((b0, a1), (a0, b0)), 'nn': ((a1, b1), (a0, b1)), 'tn': ((a0, b1), (a1, b1))}[product]
    if b.shape != b_shape:
        raise ValueError(f"b has shape {b.shape}, which does not fit a of shape {a.shape}: expected {b_shape}")
    if out is not None:
        if out.shape != out_shape:
            raise ValueError(f"out must have shape {out_shape} for a {a.shape} and b {b.shape}, got {out.shape}")
        if not out.flags.writeable: raise ValueError("out must be writeable")


def matmul_nt(a,                 # (I, Q), C-contiguous
              b,                 # (J, Q), C-contiguous, a's dtype
              out=None,          # (I, J) to write (or add) into; default: a new array
              accumulate=False): # add to `out` instead of overwriting it?
    "out (+)= a @ b.T; returns out"
    _operands(a, b, out, 'nt')
    (I, Q), J = a.shape, b.shape[0]
    if out is None: out = np.empty((I, J), a.dtype)
    if I * J * Q < config.BLAS_MIN_MACS: apply_gemm_nt(a, b, out, accumulate)
    elif accumulate: out += a @ b.T
    else: np.matmul(a, b.T, out=out)
    return out


def matmul_nn(a,         # (I, Q), C-contiguous
              b,         # (Q, J), C-contiguous, a's dtype
              out=None): # (I, J) to write into; default: a new array
    """out = a @ b; returns out. Small products go to the course's kernel with a transposed copy of `b`, except over a
    short batch (I <= RANK_UPDATE_MAX rows) with a large `b` (SERIAL_VALUES values or more): there the copy would cost
    more than the product (a fully connected layer's input gradient at batch 1 is one pass over its weight), so BLAS
    reads `b` in place."""
    _operands(a, b, out, 'nn')
    (I, Q), J = a.shape, b.shape[1]
    if out is None: out = np.empty((I, J), a.dtype)
    short_batch_large_b = I <= config.RANK_UPDATE_MAX and Q * J >= config.SERIAL_VALUES
    if I * J * Q < config.BLAS_MIN_MACS and not short_batch_large_b:
        apply_gemm_nt(a, np.ascontiguousarray(b.T), out, False)    # small: the copy is cheap
    else: np.matmul(a, b, out=out)
    return out


def matmul_tn(a,                 # (Q, I), C-contiguous
              b,                 # (Q, J), C-contiguous, a's dtype
              out,               # (I, J) to write (or add) into
              accumulate=False): # add to `out` instead of overwriting it?
    """out (+)= a.T @ b; returns out. Over a short batch (Q <= RANK_UPDATE_MAX) an `out` of SERIAL_VALUES values or more
    is Q rank-one updates (`rank_update`, one pass over `out`), whatever the number of multiply-adds; other small
    products go to the course's kernel, large ones to BLAS"""
    if out is None: raise TypeError("out must be a numpy.ndarray (matmul_tn writes into it), got None")
    _operands(a, b, out, 'tn')
    (Q, I), J = a.shape, b.shape[1]
    small = I * J * Q < config.BLAS_MIN_MACS
    if Q <= config.RANK_UPDATE_MAX and (I * J >= config.SERIAL_VALUES or not small): rank_update(a, b, out, accumulate)
    elif small: apply_gemm_nt(np.ascontiguousarray(a.T), np.ascontiguousarray(b.T), out, accumulate)
    elif accumulate: out += a.T @ b
    else: np.matmul(a.T, b, out=out)
    return out
