"""Fused kernels: a stride-1 convolution, its activation and 2x2 pooling in one pass over the data (and the backward
step through pooling and activation onto the convolution's wide rows), and a matrix product's bias and activation. They
reuse the convolution's wide-row kernel (kernels.conv), the activations (kernels.act) and max pooling's rule
(kernels.pool): nothing here defines them again, so the fused layers compute what the layers compute one by one, also at
-inf, inf and NaN.

Numba caches these kernels by the contents of this file alone, while the activations are compiled into them: after a
change to kernels.act, change this file too (a word of this docstring will do, or delete its cache in __pycache__), or
the stale kernels are loaded."""
import numpy as np

from .act import act_span, activate, activate_grad, grad_span
from .config import SERIAL_VALUES
from .conv import tap_offsets, wide_rows_two_filters
from .jit import jit, prange
from .pool import max4


@jit(parallel=True)
def conv_act_pool_forward(xp,     # padded input (N, C, Hp, Wp)
                          w,      # filters (K, C, kh, kw)
                          b,      # bias (K,)
                          act,    # activation code (kernels.act), non-decreasing
                          param,  # the activation's parameter, in xp's dtype
                          out,    # out: pooled activation maps (N, K, OH // 2, OW // 2)
                          idx,    # out (max pooling): position 0..3 of each window's maximum (N, K, PH, PW) uint8; else None
                          amap):  # out (average pooling): the activation maps act(z) (N, K, OH, OW); else None
    """pool(act(w ⋆ xp + b)): stride-1 convolution, activation and 2x2 pooling with stride 2 in one pass.
    Parallel over (image, pair of filters); the convolution is `conv_direct_forward`'s (a wide output of two filters,
    four shifted input vectors per pass, in L1), and the two maps are activated and pooled while they are still in cache.
    Max pooling takes the maximum of z first and activates it once (act is non-decreasing: the same value, a quarter of
    the work); the window's maximum and its position come from `max4`, the rule of max pooling, and the activation runs
    over the row afterwards. The pooling is chosen by which of `idx` and `amap` is None (exactly one is): Numba decides
    a test of a None argument when it compiles, so each version holds one pooling's code (a cold start compiles less)."""
    N, C, Hp, Wp = xp.shape
    K, _, kh, kw = w.shape
    OH, OW = Hp - kh + 1, Wp - kw + 1
    PH, PW = out.shape[2], out.shape[3]
    M, T = (OH - 1) * Wp + OW, C * kh * kw                      # wide output length, number of taps
    offs, wf = tap_offsets(C, kh, kw, Hp * Wp, Wp), w.reshape(K, T)
    KP, quarter = (K + 1) // 2, xp.dtype.type(0.25)
    for nk in prange(N * KP):
        n, k0 = nk // KP, 2 * (nk % KP)
        k1 = min(k0 + 1, K - 1)                                  # an odd last filter is computed twice, stored once
        acc = np.empty((2, M), xp.dtype)
        wide_rows_two_filters(xp[n].reshape(C * Hp * Wp), offs, wf, b, k0, k1, acc)   # lesson 03's convolution
        for q in range(k1 - k0 + 1):
            z, o, k = acc[q], out[n, k0 + q], k0 + q
            if amap is not None:                                 # average pooling
                am = amap[n, k]
                for i in range(OH): act_span(z[i * Wp:i * Wp + OW], am[i], act, param)   # a call, not the activations inlined
                for i in range(PH):
                    for j in range(PW):
                        o[i, j] = (am[2 * i, 2 * j] + am[2 * i, 2 * j + 1] + am[2 * i + 1, 2 * j] + am[2 * i + 1, 2 * j + 1]) * quarter
            if idx is not None:                                  # max pooling (two tests, not if/else: each one on a
                ix = idx[n, k]                                   # None argument is decided when Numba compiles)
                for i in range(PH):
                    r0, r1 = 2 * i * Wp, (2 * i + 1) * Wp
                    oi, xi = o[i], ix[i]
                    for j in range(PW):
                        oi[j], xi[j] = max4(z[r0 + 2 * j], z[r0 + 2 * j + 1], z[r1 + 2 * j], z[r1 + 2 * j + 1])
                    act_span(oi, oi, act, param)

@jit()
def _pool_act_backward_map(dout, out, idx, amap, act, param, Wp, gw, dbn, n, k):
    "`pool_act_backward_wide` for the map (n, k)"
    PH, PW = dout.shape[2], dout.shape[3]
    one, quarter = dout.dtype.type(1), dout.dtype.type(0.25)
    g = gw[n, k]
    g[:] = 0
    s = dout.dtype.type(0)
    if amap is not None:                                     # average pooling
        am = amap[n, k]
        for i in range(PH):
            for j in range(PW):
                d = dout[n, k, i, j] * quarter
                for di in range(2):
                    for dj in range(2):
                        a = am[2 * i + di, 2 * j + dj]
                        v = d * activate_grad(a, a, act, param, one)   # act's derivative needs only its output
                        g[(2 * i + di) * Wp + 2 * j + dj] = v
                        s += v
    if idx is not None:                                      # max pooling
        v = np.empty(PW, dout.dtype)
        for i in range(PH):
            y = out[n, k, i]
            grad_span(dout[n, k, i], y, y, act, param, v)   # dE/dz at each window's maximum
            for j in range(PW):
                e = int(idx[n, k, i, j])                     # 0..3 (as int: uint8 arithmetic would wrap)
                g[(2 * i + e // 2) * Wp + 2 * j + e % 2] = v[j]
                s += v[j]
    dbn[n, k] = s

@jit(parallel=True)
def pool_act_backward_wide(dout,   # dE/d(pooled output) (N, K, PH, PW)
                           out,    # the forward step's pooled output
                           idx,    # max pooling: the window positions from `conv_act_pool_forward` (else None)
                           amap,   # average pooling: the activation maps from `conv_act_pool_forward` (else None)
                           act,    # activation code
                           param,  # the activation's parameter
                           Wp,     # row length of the wide layout
                           gw,     # out: dE/dz on wide rows (N, K, M), zero in the gaps
                           dbn):   # out: dE/db of every image (N, K)
    """Backward through pooling and activation onto the convolution's wide rows (the layout of `widen`).
    Parallel over the N*K maps (serial below SERIAL_VALUES values); max pooling writes one value per
    window (at its maximum, dout * act'(out)), average pooling four (dout/4 * act'(a)). The map's sum, dE/db of this
    image, comes for free."""
    N, K = dout.shape[0], dout.shape[1]
    if N * K * gw.shape[2] < SERIAL_VALUES:
        for nk in range(N * K): _pool_act_backward_map(dout, out, idx, amap, act, param, Wp, gw, dbn, nk // K, nk % K)
    else:
        for nk in prange(N * K): _pool_act_backward_map(dout, out, idx, amap, act, param, Wp, gw, dbn, nk // K, nk % K)

@jit()
def bias_act_forward(z,      # (N, K) x Wᵀ, overwritten with the output
                     b,      # bias (K,)
                     act,    # activation code
                     param): # the activation's parameter, in z's dtype
    "z[n, k] = act(z[n, k] + b[k]) in place (serial: the fully connected layers of small networks are small)"
    one = z.dtype.type(1)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]): z[i, j] = activate(z[i, j] + b[j], act, param, one)
