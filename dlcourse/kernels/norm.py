"""Batch normalisation in passes over each channel: its statistics, the normalisation with the affine step, and the
backward step with the weight and bias gradients, each one kernel parallel over the channels. The normalisation may add
a residual and apply a ReLU in the same pass. Then local response normalisation (AlexNet's and GoogLeNet's LRN), one
pass per image and channel forward and two backward, parallel over both. The input is seen as (N, C, S), S = H*W: a
channel is N contiguous runs of S values. Batch norm's sums are kept in float64, LRN's window sums (n squares) in x's
dtype."""
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


# ------------------------------------------------------------------------------------- local response normalisation
@jit()
def lrn_channel(x, i, lo, hi, k, ak, beta, s, r, out):
    """Row i = (n, c) of (N*C, S)-numbered rows: s = k + ak · Σ x[n, c']² over c' = c + lo ... c + hi (the channels that
    exist), r = s^-β, out = x · r"""
    C = x.shape[1]
    n, c = i // C, i % C
    srow, rrow, orow, xrow = s[n, c], r[n, c], out[n, c], x[n, c]
    for j in range(x.shape[2]): srow[j] = 0
    for d in range(max(c + lo, 0), min(c + hi, C - 1) + 1):
        xd = x[n, d]
        for j in range(x.shape[2]): srow[j] += xd[j] * xd[j]
    zero, one = x.dtype.type(0), x.dtype.type(1)
    if beta == 0.75:                             # AlexNet's and GoogLeNet's: square roots, which vectorise (pow does not)
        for j in range(x.shape[2]):
            v = k + ak * srow[j]
            q = np.sqrt(v)                       # (fast-math's sqrt may be v · rsqrt(v), NaN at v = inf: pow gives 0 there)
            srow[j], rrow[j] = v, zero if v == np.inf else one / (q * np.sqrt(q))
            orow[j] = xrow[j] * rrow[j]
    else:
        for j in range(x.shape[2]):
            v = k + ak * srow[j]
            srow[j], rrow[j] = v, v ** -beta
            orow[j] = xrow[j] * rrow[j]


@jit(parallel=True)
def lrn_forward(x,        # (N, C, S)
                lo, hi,   # the window: channels c + lo ... c + hi (lo <= 0 <= hi)
                k,        # k, in x's dtype
                ak,       # α / n, in x's dtype
                beta,     # β, in x's dtype
                s,        # out: (N, C, S) k + α/n Σ x², kept for the backward step
                r,        # out: (N, C, S) s^-β, kept for the backward step
                out):     # out: (N, C, S) x · s^-β
    "Local response normalisation across channels, out = x / (k + α/n Σ_window x²)^β, one pass per (image, channel)"
    rows = x.shape[0] * x.shape[1]
    if x.size < SERIAL_VALUES:
        for i in range(rows): lrn_channel(x, i, lo, hi, k, ak, beta, s, r, out)
    else:
        for i in prange(rows): lrn_channel(x, np.int64(i), lo, hi, k, ak, beta, s, r, out)


@jit()
def lrn_backward_channel(dout, x, i, lo, hi, coef, r, t, dx):
    """Row i = (n, c): dx = dout · r - coef · x · Σ t[n, c'] over the channels c' whose window holds c (c - hi ... c - lo)"""
    C = x.shape[1]
    n, c = i // C, i % C
    drow, xrow, rrow, dxrow = dout[n, c], x[n, c], r[n, c], dx[n, c]
    for j in range(x.shape[2]): dxrow[j] = 0
    for d in range(max(c - hi, 0), min(c - lo, C - 1) + 1):
        td = t[n, d]
        for j in range(x.shape[2]): dxrow[j] += td[j]
    for j in range(x.shape[2]): dxrow[j] = drow[j] * rrow[j] - coef * xrow[j] * dxrow[j]


@jit()
def lrn_backward_terms(dout, out, s, i, t):
    "Row i = (n, c): t = dout · out / s, each channel's term of the window sums (dout · x · s^(-β-1))"
    C = out.shape[1]
    n, c = i // C, i % C
    drow, orow, srow, trow = dout[n, c], out[n, c], s[n, c], t[n, c]
    for j in range(out.shape[2]): trow[j] = drow[j] * orow[j] / srow[j]


@jit(parallel=True)
def lrn_backward(dout,     # (N, C, S) dE/d(output)
                 x,        # (N, C, S) the forward input
                 out,      # (N, C, S) the forward output
                 lo, hi,   # the forward window
                 coef,     # 2 α β / n, in x's dtype
                 s, r,     # (N, C, S) the forward step's s and s^-β
                 t,        # scratch: (N, C, S)
                 dx):      # out: (N, C, S) dE/dx
    """dE/dx of `lrn_forward`: dout · s^-β - (2αβ/n) · x · Σ dout · x · s^(-β-1), the sum over the channels whose window
    holds x's (the window mirrored); two passes, the terms of the sums first"""
    rows = x.shape[0] * x.shape[1]
    if x.size < SERIAL_VALUES:
        for i in range(rows): lrn_backward_terms(dout, out, s, i, t)
        for i in range(rows): lrn_backward_channel(dout, x, i, lo, hi, coef, r, t, dx)
    else:
        for i in prange(rows): lrn_backward_terms(dout, out, s, np.int64(i), t)
        for i in prange(rows): lrn_backward_channel(dout, x, np.int64(i), lo, hi, coef, r, t, dx)
