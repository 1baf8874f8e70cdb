"""Matrix products a @ b.T for the layers: the course's kernel (`gemm_nt`) for small products, where calling BLAS costs
more than the arithmetic (thread start-up, and OpenBLAS's workers competing with Numba's), and BLAS for large ones."""
import numpy as np

from ..kernels import config
from ..kernels.conv import gemm_nt


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
