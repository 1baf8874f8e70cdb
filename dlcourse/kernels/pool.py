"""Pooling kernels, one activation map at a time: the max-pooling selection rule (`max4`, `max_window`), unrolled 2x2 and
3x3 windows, and the kernels over all N*C maps of a batch (parallel over the maps, serial for small inputs)."""
import numpy as np

from .config import SERIAL_VALUES
from .jit import jit, prange

MAP_BLOCKS = 64   # max pooling shares its maps out in at most this many blocks (a padded 3x3 window needs scratch per block)


@jit()
def max4(a0, a1, a2, a3):  # the four values of a 2x2 window, in row-major order
    """(maximum, position 0..3) of four values by the course's rule: the first maximum in row-major order, or the last
    NaN (the maximum is then NaN). A max tree and a select chain: no data-dependent branch unless there is a NaN"""
    m = max(max(a0, a1), max(a2, a3))
    s = 3                                    # the first position holding m, searched from the back
    s = 2 if a2 == m else s
    s = 1 if a1 == m else s
    s = 0 if a0 == m else s
    if (a0 != a0) | (a1 != a1) | (a2 != a2) | (a3 != a3):
        s = 3 if a3 != a3 else (2 if a2 != a2 else (1 if a1 != a1 else 0))
        m = a0 + a1 + a2 + a3                # NaN
    return m, s


@jit()
def _max_window_exact(x, h0, h1, w0, w1, out, idx, i, j):
    "The rule of `max4` on any window of the map x: the first maximum in row-major order, or the last NaN"
    W = x.shape[1]
    m, k = -np.inf, h0 * W + w0
    for h in range(h0, h1):
        for w in range(w0, w1):
            v = x[h, w]
            if v > m or v != v: m, k = v, h * W + w
    out[i, j], idx[i, j] = m, k

@jit()
def _max_map_2x2(x, sh, sw, out, idx):
    "2x2 windows, no padding, on one map: 4 loads and `max4` per window"
    W = x.shape[1]
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            h, w = i * sh, j * sw
            m, s = max4(x[h, w], x[h, w + 1], x[h + 1, w], x[h + 1, w + 1])
            out[i, j], idx[i, j] = m, (h + s // 2) * W + w + s % 2

@jit()
def _max_map_3x3(xb, x, sh, sw, ph, pw, out, idx):
    """3x3 windows on one map x (H, W), read from xb: x itself, or x with ph rows and pw columns of -inf around it. 9 loads,
    a max tree, a select chain for the position in x; no data-dependent branch. A NaN, or a maximum of -inf (which may be
    the padding's), sends the window to the exact rule on x"""
    H, W = x.shape
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            h, w = i * sh, j * sw
            b = (h - ph) * W + w - pw
            a0, a1, a2 = xb[h, w], xb[h, w + 1], xb[h, w + 2]
            a3, a4, a5 = xb[h + 1, w], xb[h + 1, w + 1], xb[h + 1, w + 2]
            a6, a7, a8 = xb[h + 2, w], xb[h + 2, w + 1], xb[h + 2, w + 2]
            m = max(max(max(a0, a1), max(a2, a3)), max(max(a4, a5), max(max(a6, a7), a8)))
            k = b + 2 * W + 2
            k = b + 2 * W + 1 if a7 == m else k
            k = b + 2 * W if a6 == m else k
            k = b + W + 2 if a5 == m else k
            k = b + W + 1 if a4 == m else k
            k = b + W if a3 == m else k
            k = b + 2 if a2 == m else k
            k = b + 1 if a1 == m else k
            k = b if a0 == m else k
            out[i, j], idx[i, j] = m, k
            if ((a0 != a0) | (a1 != a1) | (a2 != a2) | (a3 != a3) | (a4 != a4) | (a5 != a5) | (a6 != a6) | (a7 != a7)
                    | (a8 != a8) | (m == -np.inf)):
                _max_window_exact(x, max(h - ph, 0), min(h - ph + 3, H), max(w - pw, 0), min(w - pw + 3, W), out, idx, i, j)

@jit()
def _max_map(x, kh, kw, sh, sw, ph, pw, out, idx):
    "Any window on one map, clipped to the map (padding is -inf: it never wins); branch-free compare and select per value"
    H, W = x.shape
    for i in range(out.shape[0]):
        h0, h1 = max(i * sh - ph, 0), min(i * sh - ph + kh, H)
        for j in range(out.shape[1]):
            w0, w1 = max(j * sw - pw, 0), min(j * sw - pw + kw, W)
            m, k, nan = x[h0, w0], h0 * W + w0, False      # start from the window's first value (x's dtype)
            for h in range(h0, h1):
                for w in range(w0, w1):
                    v = x[h, w]
                    greater = v > m
                    m = v if greater else m
                    k = h * W + w if greater else k
                    nan = nan | (v != v)
            out[i, j], idx[i, j] = m, k
            if nan: _max_window_exact(x, h0, h1, w0, w1, out, idx, i, j)

@jit()
def _max_pool_maps(x, kh, kw, sh, sw, ph, pw, out, idx, p0, p1):   # maps p0..p1-1 of (P, H, W) -> out, idx
    """Max pooling of the maps p0 <= p < p1: the unrolled kernels for 2x2 and 3x3 windows (3x3 with padding on a copy of
    each map inside a border of -inf, one scratch array for all of them), else the general loop"""
    H, W = x.shape[1], x.shape[2]
    padded3 = kh == 3 and kw == 3 and (ph > 0 or pw > 0)
    buf = np.full((H + 2 * ph, W + 2 * pw) if padded3 else (0, 0), -np.inf, x.dtype)   # the border stays -inf
    for p in range(p0, p1):
        if kh == 2 and kw == 2 and ph == 0 and pw == 0: _max_map_2x2(x[p], sh, sw, out[p], idx[p])
        elif kh == 3 and kw == 3 and ph == 0 and pw == 0: _max_map_3x3(x[p], x[p], sh, sw, 0, 0, out[p], idx[p])
        elif padded3:
            for h in range(H):
                src, dst = x[p, h], buf[h + ph]
                for j in range(W): dst[pw + j] = src[j]
            _max_map_3x3(buf, x[p], sh, sw, ph, pw, out[p], idx[p])
        else: _max_map(x[p], kh, kw, sh, sw, ph, pw, out[p], idx[p])

@jit()
def _max_unpool_maps(dout, idx, dx, p0, p1):   # maps p0..p1-1: (P, O_h, O_w), (P, O_h, O_w) -> dx (P, H, W)
    "Max pooling backward of the maps p0 <= p < p1: clear each map of dx, add each output gradient at its arg-max"
    HW, O = dx.shape[1] * dx.shape[2], dout.shape[1] * dout.shape[2]
    d, g, k = dx.reshape(dx.shape[0], HW), dout.reshape(dout.shape[0], O), idx.reshape(idx.shape[0], O)
    for p in range(p0, p1):
        dp, gp, kp = d[p], g[p], k[p]
        dp[:] = 0
        for o in range(O): dp[kp[o]] += gp[o]           # overlapping windows accumulate

@jit()
def _sum_pool_map(x, kh, kw, sh, sw, ph, pw, scale, out):   # one map (H, W) -> out (O_h, O_w)
    "Sum pooling of one map: 2x2 windows without padding unrolled, others summed over the window clipped to the map"
    H, W = x.shape
    if kh == 2 and kw == 2 and ph == 0 and pw == 0:
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                h, w = i * sh, j * sw
                out[i, j] = ((x[h, w] + x[h, w + 1]) + (x[h + 1, w] + x[h + 1, w + 1])) * scale
    else:
        for i in range(out.shape[0]):
            h0, h1 = max(i * sh - ph, 0), min(i * sh - ph + kh, H)
            for j in range(out.shape[1]):
                w0, w1 = max(j * sw - pw, 0), min(j * sw - pw + kw, W)
                s = 0.0
                for h in range(h0, h1):
                    for w in range(w0, w1): s += x[h, w]
                out[i, j] = s * scale

@jit()
def _sum_unpool_map(dout, kh, kw, sh, sw, ph, pw, scale, dx):   # one map: (O_h, O_w) -> dx (H, W)
    "Sum pooling backward of one map: 2x2 windows with stride 2 write each input once, others clear and accumulate"
    H, W = dx.shape
    O_h, O_w = dout.shape
    if kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0:
        for i in range(O_h):
            for j in range(O_w):
                g = dout[i, j] * scale
                dx[2 * i, 2 * j] = g; dx[2 * i, 2 * j + 1] = g
                dx[2 * i + 1, 2 * j] = g; dx[2 * i + 1, 2 * j + 1] = g
        dx[2 * O_h:, :] = 0                    # the row and column that the floored output never pooled
        dx[:2 * O_h, 2 * O_w:] = 0
    else:
        dx[:] = 0
        for i in range(O_h):
            h0, h1 = max(i * sh - ph, 0), min(i * sh - ph + kh, H)
            for j in range(O_w):
                w0, w1 = max(j * sw - pw, 0), min(j * sw - pw + kw, W)
                g = dout[i, j] * scale
                for h in range(h0, h1):
                    for w in range(w0, w1): dx[h, w] += g

@jit(parallel=True)
def max_pool2d_forward(x,           # (P, H, W) float32/float64, C-contiguous: the N*C activation maps
                       kh, kw,      # window height and width
                       sh, sw,      # strides
                       ph, pw,      # padding (-inf), at most half the window
                       out,         # (P, O_h, O_w), x's dtype: the maxima (written)
                       idx):        # (P, O_h, O_w) int32: position h*W + w of each maximum in its map (written)
    """Max pooling forward. Parallel over blocks of the P maps (serial below SERIAL_VALUES values read); 2x2 and 3x3 windows
    are unrolled and branch-free, others loop over the window. Reads x once, writes out and idx once; the only allocation
    is one scratch map per block for padded 3x3 windows."""
    P = x.shape[0]
    if out.size * kh * kw < SERIAL_VALUES:                                  # values read, overlapping windows counted
        _max_pool_maps(x, kh, kw, sh, sw, ph, pw, out, idx, 0, P)
    else:
        NB = min(P, MAP_BLOCKS)
        for blk in prange(NB): _max_pool_maps(x, kh, kw, sh, sw, ph, pw, out, idx, blk * P // NB, (blk + 1) * P // NB)

@jit(parallel=True)
def max_pool2d_backward(dout,   # (P, O_h, O_w): d(error)/d(output)
                        idx,    # (P, O_h, O_w) int32: the arg-max positions from `max_pool2d_forward`
                        dx):    # (P, H, W): d(error)/d(input) (written)
    """Max pooling backward: per map, clear dx, then add each output gradient at its arg-max (a scatter; overlapping
    windows accumulate). Parallel over blocks of the P maps (serial below SERIAL_VALUES values read and written); each
    map's dx stays in cache between the clear and the scatter."""
    P = dx.shape[0]
    if dx.size + 2 * dout.size < SERIAL_VALUES: _max_unpool_maps(dout, idx, dx, 0, P)
    else:
        NB = min(P, MAP_BLOCKS)
        for blk in prange(NB): _max_unpool_maps(dout, idx, dx, blk * P // NB, (blk + 1) * P // NB)

@jit(parallel=True)
def sum_pool2d_forward(x,        # (P, H, W) float32/float64, C-contiguous
                       kh, kw, sh, sw, ph, pw,   # window, strides, zero padding (at most half the window)
                       scale,    # factor applied to each window sum, in x's dtype: 1 (sum) or 1/(kh*kw) (average)
                       out):     # (P, O_h, O_w): scale * window sums (written)
    """Sum (and average) pooling forward. Parallel over the P maps (serial below SERIAL_VALUES values); 2x2 windows without padding are unrolled, others
    loop over the window clipped to the map (the zero padding adds nothing). Reads x once, writes out once."""
    if x.size < SERIAL_VALUES:
        for p in range(x.shape[0]): _sum_pool_map(x[p], kh, kw, sh, sw, ph, pw, scale, out[p])
    else:
        for p in prange(x.shape[0]): _sum_pool_map(x[p], kh, kw, sh, sw, ph, pw, scale, out[p])

@jit(parallel=True)
def sum_pool2d_backward(dout,    # (P, O_h, O_w): d(error)/d(output)
                        kh, kw, sh, sw, ph, pw,   # as in the forward pass
                        scale,   # as in the forward pass
                        dx):     # (P, H, W): d(error)/d(input) (written)
    """Sum (and average) pooling backward: every input of a window receives scale * the window's gradient. Parallel over
    the P maps; 2x2 windows with stride 2 (they tile the map) write each input once, other windows clear the map and
    accumulate (overlapping windows add up)."""
    if dx.size < SERIAL_VALUES:
        for p in range(dx.shape[0]): _sum_unpool_map(dout[p], kh, kw, sh, sw, ph, pw, scale, dx[p])
    else:
        for p in prange(dx.shape[0]): _sum_unpool_map(dout[p], kh, kw, sh, sw, ph, pw, scale, dx[p])
