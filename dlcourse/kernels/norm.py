"""Batch normalisation in passes over each channel: its statistics, the normalisation with the affine step, and the
backward step with the weight and bias gradients, each one kernel parallel over the channels. The normalisation may add
a residual and apply a ReLU in the same pass. The input is seen as
(N, C, S), S = H*W: a channel is N contiguous runs of S values. Sums are kept in float64."""
import numpy as np

from .act import _relu
from .config import SERIAL_VALUES
from .jit import jit, prange


@jit()
def channel_sums(x, c, mu, r):
    "sum of x[:, c] and of ((x[:, c] - mu) * r)**2 over the batch and the positions, in float64"
    s = q = np.float64(0)                  # float64 also as plain Python (NUMBA_DISABLE_JIT): 0.0 + float32 is float32
    for n in range(x.shape[0]):
        for j in range(x.shape[2]):
            v = x[n, c, j]
            s += v
            d = (v - mu) * r
            q += d * d
    return s, q


@jit(parallel=True)
def batch_stats(x,      # (N, C, S)
                mean,   # out: (C,) float64, the mean of each channel
                var):   # out: (C,) float64, its biased variance (the batch's own, which normalises it)
    "The mean of each channel, then the variance around it (two passes: no cancellation of large means)"
    N, C, S = x.shape
    m = N * S
    if x.size < SERIAL_VALUES:
        for c in range(C):
            mean[c] = channel_sums(x, c, 0.0, 0.0)[0] / m
            var[c] = channel_sums(x, c, mean[c], 1.0)[1] / m
    else:
        for i in prange(C):                      # (the loop index is unsigned: an int64 channel index keeps one
            c = np.int64(i)                      # compiled channel_sums for both loops)
            mean[c] = channel_sums(x, c, 0.0, 0.0)[0] / m
            var[c] = channel_sums(x, c, mean[c], 1.0)[1] / m


@jit()
def normalize_channel(x, c, mu, r, w, b, res, add, relu, out):
    "out[:, c] = (x[:, c] - mu) * r * w + b, plus res[:, c] if `add`, then max(0, .) if `relu` (see `batch_norm_forward`)"
    one = x.dtype.type(1)
    for n in range(x.shape[0]):                # one loop per case: each holds only its own arithmetic and vectorises
        src, dst, plus = x[n, c], out[n, c], res[n, c]
        if add and relu:
            for j in range(x.shape[2]): dst[j] = _relu((src[j] - mu) * r * w + b + plus[j], one, one)
        elif add:
            for j in range(x.shape[2]): dst[j] = (src[j] - mu) * r * w + b + plus[j]
        elif relu:
            for j in range(x.shape[2]): dst[j] = _relu((src[j] - mu) * r * w + b, one, one)
        else:
            for j in range(x.shape[2]): dst[j] = (src[j] - mu) * r * w + b


@jit(parallel=True)
def batch_norm_forward(x,        # (N, C, S)
                       mean,     # (C,) the statistics to normalise with, in x's dtype
                       inv_std,  # (C,) 1 / sqrt(σ² + ϵ), in x's dtype
                       w, b,     # (C,) weight and bias
                       res,      # (N, C, S) added to the result if `add` (else not read: pass x)
                       add,      # add res? (a residual connection)
                       relu,     # then apply ReLU? (the activation after batch norm, fused)
                       out):     # out: (N, C, S)
    """out = x̂ · w + b with x̂ = (x - mean) · inv_std, per channel, plus res if `add`, then ReLU if `relu`, in the same
    pass (ResNet's relu(bn(x)) and relu(bn(x) + shortcut): no pass over memory for the sum or the activation)"""
    C = x.shape[1]
    if x.size < SERIAL_VALUES:
        for c in range(C): normalize_channel(x, c, mean[c], inv_std[c], w[c], b[c], res, add, relu, out)
    else:
        for i in prange(C):
            c = np.int64(i)                      # as in batch_stats
            normalize_channel(x, c, mean[c], inv_std[c], w[c], b[c], res, add, relu, out)


@jit()
def backward_channel(dout, x, c, mu, r, w, gw, gb, batch_stats, dx):
    "The backward step of one channel (see `batch_norm_backward`)"
    sg = sgx = np.float64(0)
    for n in range(x.shape[0]):
        for j in range(x.shape[2]):
            g = dout[n, c, j]
            sg += g
            sgx += g * ((x[n, c, j] - mu) * r)
    gb[c] += sg
    gw[c] += sgx
    k = w * r
    if batch_stats:
        m = x.shape[0] * x.shape[2]
        mg, mgx = sg / m, sgx / m
        for n in range(x.shape[0]):
            for j in range(x.shape[2]):
                dx[n, c, j] = k * (dout[n, c, j] - mg - (x[n, c, j] - mu) * r * mgx)
    else:
        for n in range(x.shape[0]):
            for j in range(x.shape[2]): dx[n, c, j] = k * dout[n, c, j]


@jit(parallel=True)
def batch_norm_backward(dout,         # (N, C, S) dE/d(output)
                        x,            # (N, C, S) the forward input
                        mean,         # (C,) the statistics it was normalised with
                        inv_std,      # (C,)
                        w,            # (C,) weight
                        gw, gb,       # (C,) the weight's and bias's gradients, added to
                        batch_stats,  # were mean and variance the batch's own (training)? Then they depend on x too
                        dx):          # out: (N, C, S) dE/dx
    """gb += Σ dout, gw += Σ dout · x̂ per channel; dx = w · inv_std · (dout - mean(dout) - x̂ · mean(dout · x̂)) with the
    batch's statistics, w · inv_std · dout without"""
    C = x.shape[1]
    if x.size < SERIAL_VALUES:
        for c in range(C): backward_channel(dout, x, c, mean[c], inv_std[c], w[c], gw, gb, batch_stats, dx)
    else:
        for i in prange(C):
            c = np.int64(i)                      # as in batch_stats
            backward_channel(dout, x, c, mean[c], inv_std[c], w[c], gw, gb, batch_stats, dx)
