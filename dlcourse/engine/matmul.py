"""Matrix products for the layers, without transposed copies: a @ b.T (forward of a fully connected layer), a @ b (its
input gradient) and a.T @ b (its weight gradient). The course's kernels take small products, where calling BLAS costs
more than the arithmetic (thread start-up, and OpenBLAS's workers competing with Numba's); BLAS takes large ones, reading
a transposed operand in place (a transposed view is a column-major matrix to BLAS); a weight gradient over a short batch
is a few rank-one updates, memory-bound, done in one pass over the gradient (`rank_update`)."""
import numpy as np

from ..kernels import config
from ..kernels.conv import gemm_nt, rank_update


def matmul_nt(a,                 # (I, Q), C-contiguous
              b,                 # (J, Q), C-contiguous, a's dtype
              out=None,          # (I, J) to write (or add) into; default: a new array
              accumulate=False): # add to `out` instead of overwriting it?
    "out (+)= a @ b.T; returns out"
    (I, Q), J = a.shape, b.shape[0]
    if out is None: out = np.empty((I, J), a.dtype)
    if I * J * Q < config.BLAS_MIN_MACS: gemm_nt(a, b, out, accumulate)
    elif accumulate: out += a @ b.T
    else: np.matmul(a, b.T, out=out)
    return out


def matmul_nn(a,         # (I, Q), C-contiguous
              b,         # (Q, J), C-contiguous, a's dtype
              out=None): # (I, J) to write into; default: a new array
    "out = a @ b; returns out"
    (I, Q), J = a.shape, b.shape[1]
    if out is None: out = np.empty((I, J), a.dtype)
    if I * J * Q < config.BLAS_MIN_MACS: gemm_nt(a, np.ascontiguousarray(b.T), out, False)   # small: the copy is cheap
    else: np.matmul(a, b, out=out)
    return out


def matmul_tn(a,                 # (Q, I), C-contiguous
              b,                 # (Q, J), C-contiguous, a's dtype
              out,               # (I, J) to write (or add) into
              accumulate=False): # add to `out` instead of overwriting it?
    "out (+)= a.T @ b; returns out"
    (Q, I), J = a.shape, b.shape[1]
    if I * J * Q < config.BLAS_MIN_MACS:
        gemm_nt(np.ascontiguousarray(a.T), np.ascontiguousarray(b.T), out, accumulate)
    elif Q <= config.RANK_UPDATE_MAX: rank_update(a, b, out, accumulate)
    elif accumulate: out += a.T @ b
    else: np.matmul(a.T, b, out=out)
    return out
