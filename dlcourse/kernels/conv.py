"""Convolution kernels: im2col/col2im and the layout copies around a matrix product (any stride), two matrix products of
the shapes BLAS is slow at, the direct kernels that convolve stride-1 layers on "wide rows" without a patch matrix, and
the register-tile kernels that convolve channels-last float32 layers without one (`simd`'s vectors).
`dlcourse.engine.conv` chooses among them and validates their arguments."""
import numpy as np

from .config import SERIAL_MACS
from .jit import jit, prange
from .simd import vadd, vbroadcast, vfma, vget, vload, vstore, vsum, vzero


SHORT_ROWS = 16     # output rows shorter than this: im2col and col2im gather and scatter through a table of offsets
PLANE_BLOCKS = 64   # im2col and col2im share their N*C planes out in at most this many blocks, each with its own scratch


@jit()
def patch_offsets(kh, kw, sh, sw, OH, OW, Wp):
    "tab[(r, s), (i, j)] = (i*sh + r)*Wp + j*sw + s: where each value of each tap's patch row lies in a flattened padded plane"
    tab = np.empty((kh * kw, OH * OW), np.uint32)       # unsigned: indexing with it needs no wraparound test
    for r in range(kh):
        for s in range(kw):
            for i in range(OH):
                for j in range(OW): tab[r * kw + s, i * OW + j] = (i * sh + r) * Wp + j * sw + s
    return tab

@jit()
def to_inside(x, ph, pw, buf):
    "buf[ph:ph + H, pw:pw + W] = x: a plane x (H, W) copied into the inside of a padded plane `buf`, its border untouched"
    H, W = x.shape
    for h in range(H):
        src, dst = x[h], buf[h + ph]
        for j in range(W): dst[pw + j] = src[j]

@jit()
def from_inside(buf, ph, pw, out):
    "out = buf[ph:ph + H, pw:pw + W]: the inside of a padded plane `buf` copied into a plane out (H, W)"
    H, W = out.shape
    for h in range(H):
        src, dst = buf[ph + h], out[h]
        for j in range(W): dst[j] = src[pw + j]

@jit()
def padded_plane(x, ph, pw, buf):
    """One plane x (H, W) with ph rows and pw columns of zeros around it: x itself when there is no padding, else `buf`
    (H + 2ph, W + 2pw), whose inside is overwritten (its border must already be zero)"""
    if ph == 0 and pw == 0: return x
    to_inside(x, ph, pw, buf)
    return buf

@jit(parallel=True)
def im2col(x,           # input (N, C, H, W), unpadded
           kh, kw,      # filter size
           sh, sw,      # stride
           ph, pw,      # padding
           cols):       # out: patch matrix (C*kh*kw, N*OH*OW)
    """Patch matrix of the padded input: cols[(c, r, s), (n, i, j)] = xp[n, c, i*sh + r, j*sw + s], xp = x padded.
    Parallel over blocks of the N*C input planes (each writes its own segments of the rows). Each plane is padded on its
    own, in a small array that stays in cache, so the padded batch never goes through memory. For each input row the
    kw taps are consecutive, so the row stays in L1 while the inner loop copies its OW values into each tap's row.
    With a horizontal stride sw > 1 the plane is first split into its sw phases, phases[h, q, m] = xp[n, c, h, m*sw + q],
    so that tap s reads the contiguous run phases[h, s % sw, s // sw:][:OW] instead of every sw-th value.
    Output rows shorter than SHORT_ROWS would make that many short runs; then the kernel goes channel by channel instead
    (parallel over blocks of channels): the channel is padded for the whole batch in one scratch array, and each of its
    kh*kw rows of the patch matrix is written from front to back, gathered through a table of offsets (`patch_offsets`)."""
    N, C, H, W = x.shape
    Hp, Wp = H + 2 * ph, W + 2 * pw
    OH, OW = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
    L, PW, NC = OH * OW, (Wp + sw - 1) // sw, N * C
    NB = min(NC, PLANE_BLOCKS)
    if OW < SHORT_ROWS:                                      # short output rows: channel by channel, row by row
        tab, T, NL = patch_offsets(kh, kw, sh, sw, OH, OW, Wp), kh * kw, N * L
        cf, NB = cols.reshape(cols.size), min(C, PLANE_BLOCKS)
        for blk in prange(NB):
            pad = np.zeros((N, Hp, Wp), x.dtype)            # the block's channel, padded, for every image
            for c in range(blk * C // NB, (blk + 1) * C // NB):
                for n in range(N): to_inside(x[n, c], ph, pw, pad[n])
                pf = pad.reshape(N * Hp * Wp)
                for t in range(T):                           # row (c, t) of cols, written front to back
                    o = (c * T + t) * NL
                    for n in range(N):
                        po = n * Hp * Wp
                        for l in range(L): cf[o + n * L + l] = pf[po + tab[t, l]]
        return
    for blk in prange(NB):
        buf = np.zeros((Hp, Wp), x.dtype)                    # scratch of this block: allocated once, not per plane
        phases = np.empty((Hp if sw > 1 else 0, sw, PW), x.dtype)
        for nc in range(blk * NC // NB, (blk + 1) * NC // NB):
            n, c = nc // C, nc % C
            plane = padded_plane(x[n, c], ph, pw, buf)
            for h in range(phases.shape[0]):
                src = plane[h]
                for q in range(sw):
                    dst = phases[h, q]
                    for m in range((Wp - q + sw - 1) // sw): dst[m] = src[m * sw + q]
            for r in range(kh):
                for i in range(OH):
                    o = n * L + i * OW
                    if sw == 1:
                        src = plane[i * sh + r]
                        for s in range(kw):
                            dst = cols[(c * kh + r) * kw + s, o:o + OW]
                            for j in range(OW): dst[j] = src[j + s]
                    else:
                        rows = phases[i * sh + r]
                        for s in range(kw):
                            src = rows[s % sw, s // sw:s // sw + OW]
                            dst = cols[(c * kh + r) * kw + s, o:o + OW]
                            for j in range(OW): dst[j] = src[j]

@jit(parallel=True)
def col2im(dcols,       # patch gradients (C*kh*kw, N*OH*OW)
           kh, kw,      # filter size
           sh, sw,      # stride
           ph, pw,      # padding
           dx):         # out: gradient of the unpadded input (N, C, H, W), overwritten
    """Adjoint of `im2col`: add every column back onto its patch, dxp[n, c, i*sh + r, j*sw + s] += dcols[(c, r, s), (n, i, j)],
    and keep the part of dxp inside the padding: dx = dxp[:, :, ph:ph + H, pw:pw + W].
    Parallel over blocks of the N*C planes (each plane owned by one block: no races). A padded plane is summed in a small
    array that stays in cache and only its inside is written to `dx`. For each row of the plane the inner loop adds the
    OW values of each of the kw taps (contiguous in `dcols`) while the row stays in L1. With output rows shorter than
    SHORT_ROWS it goes channel by channel, as `im2col` does: each row of `dcols` is read from front to back and scattered
    onto the channel's padded planes through `patch_offsets` (within one row no two values meet: no races, no conflicts)."""
    N, C, H, W = dx.shape
    Hp, Wp = H + 2 * ph, W + 2 * pw
    OH, OW = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
    L, NC = OH * OW, N * C
    if OW < SHORT_ROWS:                                      # short output rows: channel by channel, row by row
        tab, T, NL = patch_offsets(kh, kw, sh, sw, OH, OW, Wp), kh * kw, N * L
        df, NB = dcols.reshape(dcols.size), min(C, PLANE_BLOCKS)
        for blk in prange(NB):
            pad = np.empty((N, Hp, Wp), dx.dtype)           # the block's channel, padded, for every image
            pf = pad.reshape(N * Hp * Wp)
            for c in range(blk * C // NB, (blk + 1) * C // NB):
                pf[:] = 0
                for t in range(T):                           # row (c, t) of dcols, read front to back
                    o = (c * T + t) * NL
                    for n in range(N):
                        po = n * Hp * Wp
                        for l in range(L): pf[po + tab[t, l]] += df[o + n * L + l]
                for n in range(N): from_inside(pad[n], ph, pw, dx[n, c])
        return
    NB = min(NC, PLANE_BLOCKS)
    for blk in prange(NB):
        buf = np.empty((Hp, Wp), dx.dtype)
        for nc in range(blk * NC // NB, (blk + 1) * NC // NB):
            n, c = nc // C, nc % C
            plane = dx[n, c] if ph == 0 and pw == 0 else buf
            plane[:] = 0
            for r in range(kh):
                for i in range(OH):
                    dst, o = plane[i * sh + r], n * L + i * OW
                    for s in range(kw):
                        src = dcols[(c * kh + r) * kw + s, o:o + OW]
                        if sw == 1:
                            for j in range(OW): dst[j + s] += src[j]
                        else:
                            for j in range(OW): dst[j * sw + s] += src[j]
            if ph or pw: from_inside(plane, ph, pw, dx[n, c])

@jit(parallel=True)
def nchw_to_nhwc(x,        # (N, C, H, W)
                 ph, pw,   # padding
                 xt):      # out: (N, H + 2ph, W + 2pw, C'), channels last, zero border; C' >= C
    """xt[n, ph + h, pw + w, c] = x[n, c, h, w], zeros around (and in the channels from C on, where C' > C): a batch in
    channels-last order, padded in the same pass.
    Parallel over the images; each image's values stay in cache while its channels are interleaved."""
    N, C, H, W = x.shape
    Hp, Wp = xt.shape[1], xt.shape[2]
    for n in prange(N):
        t = xt[n]
        for h in range(Hp):
            if h < ph or h >= ph + H: t[h] = 0
            else:
                row = t[h]
                row[:pw] = 0
                row[pw + W:] = 0
                if xt.shape[3] > C: row[pw:pw + W, C:] = 0
                for c in range(C):
                    src = x[n, c, h - ph]
                    for w in range(W): row[pw + w, c] = src[w]

@jit(parallel=True)
def im2col_nhwc(xt,        # padded channels-last input (N, Hp, Wp, C), from `nchw_to_nhwc`
                kh, kw,    # filter size
                sh, sw,    # stride
                colst):    # out: transposed patch matrix (N*OH*OW, kh*kw*C)
    """colst[(n, i, j), (r, s, c)] = xt[n, i*sh + r, j*sw + s, c]: one row per output position. With the channels last,
    the kw*C values of one filter row are contiguous in both arrays: a patch row is kh copies of kw*C values, however
    small the map. Parallel over the N*OH output rows."""
    N, Hp, Wp, C = xt.shape
    OH, OW = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
    R = kw * C
    for ni in prange(N * OH):
        n, i = ni // OH, ni % OH
        for j in range(OW):
            dst = colst[ni * OW + j]
            for r in range(kh):
                src = xt[n, i * sh + r].reshape(Wp * C)[j * sw * C:j * sw * C + R]
                d = dst[r * R:(r + 1) * R]
                for q in range(R): d[q] = src[q]

@jit(parallel=True)
def col2im_nhwc(dcolst,    # transposed patch gradients (N*OH*OW, kh*kw*C)
                kh, kw,    # filter size
                sh, sw,    # stride
                ph, pw,    # padding
                dx):       # out: gradient of the input (N, C, H, W), overwritten
    """Adjoint of `nchw_to_nhwc` and `im2col_nhwc`: add every patch row back onto its window of a padded channels-last
    image (kw*C contiguous values per filter row), then write the image's inside back in NCHW order. Parallel over the
    images (each owns its padded scratch image, which stays in cache)."""
    N, C, H, W = dx.shape
    Hp, Wp = H + 2 * ph, W + 2 * pw
    OH, OW = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
    R = kw * C
    for n in prange(N):
        acc = np.zeros((Hp, Wp * C), dx.dtype)
        for i in range(OH):
            for j in range(OW):
                src = dcolst[(n * OH + i) * OW + j]
                for r in range(kh):
                    d, g = acc[i * sh + r, j * sw * C:j * sw * C + R], src[r * R:(r + 1) * R]
                    for q in range(R): d[q] += g[q]
        for c in range(C):
            for h in range(H):
                row, out = acc[ph + h], dx[n, c, h]
                for w in range(W): out[w] = row[(pw + w) * C + c]

@jit(parallel=True)
def nhwc_to_nchw(yt,       # (N*L, K): one row per output position, as a GEMM on `im2col_nhwc`'s matrix gives it
                 b,        # bias (K,)
                 out):     # out: (N, K, L)
    """out[n, k, l] = yt[n*L + l, k] + b[k]: channels-last rows to NCHW planes, with the bias. Parallel over the images."""
    N, K, L = out.shape
    for n in prange(N):
        src = yt[n * L:(n + 1) * L]
        for k in range(K):
            dst, bk = out[n, k], b[k]
            for l in range(L): dst[l] = src[l, k] + bk

TILE_POSITIONS, TILE_FILTERS = 6, 16   # the register tile of the channels-last kernels: 6 positions (or input channels)
                                       # times 16 filters, two vectors each, 12 of the 16 AVX2 registers

@jit(inline=True)
def tap_base(p, P, L, OW, Hp, Wp, C, sh, sw):
    """Where output position p of the batch (the last one, P - 1, from p = P on) has its first tap in a padded input
    (N, Hp, Wp, C), flattened, for the stride (sh, sw)"""
    p = min(p, P - 1)
    q = p % L
    return ((p // L * Hp + q // OW * sh) * Wp + q % OW * sw) * C

@jit(inline=True)
def store_tile_column(of, o, L, k0, K, v0, v1):
    "of[o + k*L] = (v0, v1)[k - k0] for the filters k0 <= k < min(k0 + 16, K): one position of a tile, to NCHW"
    if k0 + 16 <= K:
        for i in range(8): of[o + (k0 + i) * L] = vget(v0, i)
        for i in range(8): of[o + (k0 + 8 + i) * L] = vget(v1, i)
    else:
        for i in range(8):
            if k0 + i < K: of[o + (k0 + i) * L] = vget(v0, i)
        for i in range(8):
            if k0 + 8 + i < K: of[o + (k0 + 8 + i) * L] = vget(v1, i)

@jit(parallel=True)
def conv_nhwc_forward(xt,      # padded channels-last input (N, Hp, Wp, C), float32, from `nchw_to_nhwc`
                      wt,      # filters (kh*kw*C, Kp), rows (r, s, c), Kp a multiple of 16, zero from column K on
                      bt,      # bias (Kp,), zero from K on
                      kh, kw,  # filter size
                      sh, sw,  # stride
                      out):    # out: (N, K, OH, OW), OH = (Hp - kh) // sh + 1, OW = (Wp - kw) // sw + 1
    """out[n, k, i, j] = bt[k] + sum_(r,s,c) xt[n, i*sh + r, j*sw + s, c] wt[(r, s, c), k], without a patch matrix: a tile of 6
    output positions (consecutive in the batch, across rows and images) times 16 filters is 12 vectors of running sums
    held in registers, while the loop over the kh*kw*C taps adds, per input channel, 6 broadcast inputs times the two
    vectors of that channel's 16 weights (12 multiply-adds per 8 loads). Parallel over the tiles (positions x filter
    blocks); each writes its 96 results to NCHW with the bias. The last tile of positions repeats the last position."""
    N, Hp, Wp, C = xt.shape
    K, OH, OW, Kp = out.shape[1], out.shape[2], out.shape[3], wt.shape[1]
    L = OH * OW
    P, KB = N * L, Kp // TILE_FILTERS
    xf, wf, of = xt.reshape(-1), wt.reshape(-1), out.reshape(-1)
    for tk in prange(-(-P // TILE_POSITIONS) * KB):
        t, k0 = tk // KB, tk % KB * TILE_FILTERS
        p0 = t * TILE_POSITIONS
        b0, b1 = tap_base(p0, P, L, OW, Hp, Wp, C, sh, sw), tap_base(p0 + 1, P, L, OW, Hp, Wp, C, sh, sw)
        b2, b3 = tap_base(p0 + 2, P, L, OW, Hp, Wp, C, sh, sw), tap_base(p0 + 3, P, L, OW, Hp, Wp, C, sh, sw)
        b4, b5 = tap_base(p0 + 4, P, L, OW, Hp, Wp, C, sh, sw), tap_base(p0 + 5, P, L, OW, Hp, Wp, C, sh, sw)
        a00, a01, a10, a11, a20, a21 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
        a30, a31, a40, a41, a50, a51 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
        for rs in range(kh * kw):
            off, wrow = (rs // kw * Wp + rs % kw) * C, rs * C * Kp + k0
            for c in range(C):
                w0, w1 = vload(wf, wrow + c * Kp), vload(wf, wrow + c * Kp + 8)
                v = vbroadcast(xf, b0 + off + c); a00 = vfma(v, w0, a00); a01 = vfma(v, w1, a01)
                v = vbroadcast(xf, b1 + off + c); a10 = vfma(v, w0, a10); a11 = vfma(v, w1, a11)
                v = vbroadcast(xf, b2 + off + c); a20 = vfma(v, w0, a20); a21 = vfma(v, w1, a21)
                v = vbroadcast(xf, b3 + off + c); a30 = vfma(v, w0, a30); a31 = vfma(v, w1, a31)
                v = vbroadcast(xf, b4 + off + c); a40 = vfma(v, w0, a40); a41 = vfma(v, w1, a41)
                v = vbroadcast(xf, b5 + off + c); a50 = vfma(v, w0, a50); a51 = vfma(v, w1, a51)
        bias0, bias1 = vload(bt, k0), vload(bt, k0 + 8)
        valid, KL = min(TILE_POSITIONS, P - p0), K * L
        store_tile_column(of, p0 // L * KL + p0 % L, L, k0, K, vadd(a00, bias0), vadd(a01, bias1))
        if valid > 1: store_tile_column(of, (p0 + 1) // L * KL + (p0 + 1) % L, L, k0, K, vadd(a10, bias0), vadd(a11, bias1))
        if valid > 2: store_tile_column(of, (p0 + 2) // L * KL + (p0 + 2) % L, L, k0, K, vadd(a20, bias0), vadd(a21, bias1))
        if valid > 3: store_tile_column(of, (p0 + 3) // L * KL + (p0 + 3) % L, L, k0, K, vadd(a30, bias0), vadd(a31, bias1))
        if valid > 4: store_tile_column(of, (p0 + 4) // L * KL + (p0 + 4) % L, L, k0, K, vadd(a40, bias0), vadd(a41, bias1))
        if valid > 5: store_tile_column(of, (p0 + 5) // L * KL + (p0 + 5) % L, L, k0, K, vadd(a50, bias0), vadd(a51, bias1))

@jit(inline=True)
def add_tile_row(wf, o, v0, v1):
    "wf[o:o + 16] += (v0, v1)"
    vstore(wf, o, vadd(vload(wf, o), v0))
    vstore(wf, o + 8, vadd(vload(wf, o + 8), v1))

@jit(parallel=True)
def conv_nhwc_weight_grad(xt,      # padded channels-last input (N, Hp, Wp, C), float32: `conv_nhwc_forward`'s
                          gt,      # output gradient, channels last and padded, (N, Hq, Wq, Kp), Kp a multiple of 16:
                          pa, pb,  # dE/dy[n, k, i, j] at gt[n, pa + i, pb + j, k], zero from channel K on
                          kh, kw,  # filter size
                          sh, sw,  # stride
                          OH, OW,  # output size
                          chunk,   # output rows whose inputs and gradients are read while they stay in cache
                          parts):  # out: dE/dw of each of S slices of the output rows (S, kh*kw*C, Kp), rows (r, s, c)
                                   # as `conv_nhwc_forward`'s filters; the caller sums them
    """parts[slice, (r, s, c), k] = sum_(n,i,j) xt[n, i*sh + r, j*sw + s, c] gt[n, pa + i, pb + j, k] over the output rows
    (n, i) of the slice: a tile of 6 input channels times 16 filters of one tap (r, s) is 12 vectors of running sums in
    registers, while the loop over the output positions adds 6 broadcast inputs times the two vectors of the position's
    16 gradients. Parallel over the S slices of the batch's N*OH output rows (a fixed number: the same sums whatever the
    threads, and a single image gives every thread work); a slice goes through its rows in chunks of `chunk`, and
    through every tile for each chunk while the chunk is in cache, adding the tile's sums to its rows. Where C is not a
    multiple of 6 the last tile repeats the last channel."""
    N, Hp, Wp, C = xt.shape
    Hq, Wq, Kp = gt.shape[1], gt.shape[2], gt.shape[3]
    S, R = parts.shape[0], N * OH
    CT, KB = -(-C // TILE_POSITIONS), Kp // TILE_FILTERS
    xf, gf = xt.reshape(-1), gt.reshape(-1)
    for part in prange(S):
        wf = parts[part].reshape(-1)
        wf[:] = 0
        for m0 in range(part * R // S, (part + 1) * R // S, chunk):
            m1 = min(m0 + chunk, (part + 1) * R // S)
            for tile in range(kh * kw * CT * KB):
                rs, ck = tile // (CT * KB), tile % (CT * KB)
                r, s, c0, k0 = rs // kw, rs % kw, ck // KB * TILE_POSITIONS, ck % KB * TILE_FILTERS
                c1, c2, c3 = min(c0 + 1, C - 1), min(c0 + 2, C - 1), min(c0 + 3, C - 1)
                c4, c5 = min(c0 + 4, C - 1), min(c0 + 5, C - 1)
                a00, a01, a10, a11, a20, a21 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
                a30, a31, a40, a41, a50, a51 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
                n, i = m0 // OH, m0 % OH                                     # the output row (n, i), counted along: a
                for _ in range(m0, m1):                                      # division per row cost a fifth of the
                    xb = ((n * Hp + i * sh + r) * Wp + s) * C                # kernel's time on 4x4 maps
                    gb = ((n * Hq + pa + i) * Wq + pb) * Kp + k0             # its gradient, filters k0...
                    for j in range(OW):
                        g0, g1 = vload(gf, gb), vload(gf, gb + 8)
                        v = vbroadcast(xf, xb + c0); a00 = vfma(v, g0, a00); a01 = vfma(v, g1, a01)
                        v = vbroadcast(xf, xb + c1); a10 = vfma(v, g0, a10); a11 = vfma(v, g1, a11)
                        v = vbroadcast(xf, xb + c2); a20 = vfma(v, g0, a20); a21 = vfma(v, g1, a21)
                        v = vbroadcast(xf, xb + c3); a30 = vfma(v, g0, a30); a31 = vfma(v, g1, a31)
                        v = vbroadcast(xf, xb + c4); a40 = vfma(v, g0, a40); a41 = vfma(v, g1, a41)
                        v = vbroadcast(xf, xb + c5); a50 = vfma(v, g0, a50); a51 = vfma(v, g1, a51)
                        xb += sw * C
                        gb += Kp
                    i += 1
                    if i == OH: i, n = 0, n + 1
                row0 = rs * C * Kp + k0
                add_tile_row(wf, row0 + c0 * Kp, a00, a01)
                if c0 + 1 < C: add_tile_row(wf, row0 + c1 * Kp, a10, a11)
                if c0 + 2 < C: add_tile_row(wf, row0 + c2 * Kp, a20, a21)
                if c0 + 3 < C: add_tile_row(wf, row0 + c3 * Kp, a30, a31)
                if c0 + 4 < C: add_tile_row(wf, row0 + c4 * Kp, a40, a41)
                if c0 + 5 < C: add_tile_row(wf, row0 + c5 * Kp, a50, a51)

@jit(parallel=True)
def gemm_to_nchw(y,     # GEMM result (K, N*L)
                b,      # bias (K,)
                out):   # out: (N, K, L)
    """out[n, k, :] = y[k, n*L:(n+1)*L] + b[k]: the GEMM's layout to NCHW, with the bias.
    Parallel over the N*K output planes; the inner loop copies L contiguous values."""
    N, K, L = out.shape
    for nk in prange(N * K):
        n, k = nk // K, nk % K
        src, dst, bk = y[k, n * L:(n + 1) * L], out[n, k], b[k]
        for l in range(L): dst[l] = src[l] + bk

@jit(parallel=True)
def nchw_to_gemm(dout,  # output gradient (N, K, L)
         g):            # out: (K, N*L)
    """g[k, n*L:(n+1)*L] = dout[n, k, :]: the output gradient in the GEMM's layout.
    Parallel over the N*K planes; the inner loop copies L contiguous values."""
    N, K, L = dout.shape
    for nk in prange(N * K):
        n, k = nk // K, nk % K
        src, dst = dout[n, k], g[k, n * L:(n + 1) * L]
        for l in range(L): dst[l] = src[l]

@jit(parallel=True)
def matmul_nt_split(a,  # (I, Q)
              b,        # (J, Q)
              parts):   # out: (P, I, J) partial products, parts[p] = a[:, piece p] @ b[:, piece p].T
    """a @ b.T in P pieces of the long dimension Q; the caller sums parts over its first axis.
    Parallel over the P pieces (each owns its partial product); the inner loop is a dot product of two rows of `a` with
    four rows of `b` over one piece (8 running sums in the input's dtype, 8 multiply-adds per 6 loads)."""
    I, Q = a.shape
    J, P = b.shape[0], parts.shape[0]
    zero = a.dtype.type(0)
    for pc in prange(P):
        q0, q1 = pc * Q // P, (pc + 1) * Q // P
        out = parts[pc]
        for j0 in range(0, J, 4):
            j1, j2, j3 = min(j0 + 1, J - 1), min(j0 + 2, J - 1), min(j0 + 3, J - 1)
            b0, b1, b2, b3 = b[j0, q0:q1], b[j1, q0:q1], b[j2, q0:q1], b[j3, q0:q1]
            for i0 in range(0, I, 2):
                i1 = min(i0 + 1, I - 1)
                a0, a1 = a[i0, q0:q1], a[i1, q0:q1]
                s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
                for q in range(q1 - q0):
                    x0, x1 = a0[q], a1[q]
                    y0, y1, y2, y3 = b0[q], b1[q], b2[q], b3[q]
                    s00 += x0 * y0; s01 += x0 * y1; s02 += x0 * y2; s03 += x0 * y3
                    s10 += x1 * y0; s11 += x1 * y1; s12 += x1 * y2; s13 += x1 * y3
                out[i0, j0], out[i0, j1], out[i0, j2], out[i0, j3] = s00, s01, s02, s03   # duplicates (clamped
                out[i1, j0], out[i1, j1], out[i1, j2], out[i1, j3] = s10, s11, s12, s13   # indices) hold equal sums

@jit()
def _gemm_nt_blocks(a, b, out, accumulate, start, stop):
    "Blocks start..stop-1 (2 rows x 4 columns each, row-major) of `gemm_nt`"
    Q, J = a.shape[1], b.shape[0]
    JB = (J + 3) // 4
    zero = a.dtype.type(0)
    for it in range(start, stop):
        i0, j0 = 2 * (it // JB), 4 * (it % JB)
        i1, j1, j2, j3 = min(i0 + 1, a.shape[0] - 1), min(j0 + 1, J - 1), min(j0 + 2, J - 1), min(j0 + 3, J - 1)
        a0, a1, b0, b1, b2, b3 = a[i0], a[i1], b[j0], b[j1], b[j2], b[j3]
        s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
        for q in range(Q):
            x0, x1, y0, y1, y2, y3 = a0[q], a1[q], b0[q], b1[q], b2[q], b3[q]
            s00 += x0 * y0; s01 += x0 * y1; s02 += x0 * y2; s03 += x0 * y3
            s10 += x1 * y0; s11 += x1 * y1; s12 += x1 * y2; s13 += x1 * y3
        sums = ((s00, s01, s02, s03), (s10, s11, s12, s13))
        for di in range(i1 - i0 + 1):                      # clamped indices repeat an element: write each once
            for dj in range(min(4, J - j0)):
                out[i0 + di, j0 + dj] = sums[di][dj] + (out[i0 + di, j0 + dj] if accumulate else zero)

@jit(parallel=True)
def gemm_nt(a,            # (I, Q)
            b,            # (J, Q)
            out,          # out: (I, J)
            accumulate):  # add to out instead of overwriting it?
    """out (+)= a @ b.T, every element computed by one thread (the result does not depend on the number of threads).
    Parallel over blocks of 2 rows x 4 columns of `out` (serial below SERIAL_MACS multiply-adds); the inner loop is a dot
    product of two rows of `a` with four rows of `b` (8 running sums in the input's dtype, 8 multiply-adds per 6 loads)."""
    I, Q = a.shape
    J = b.shape[0]
    blocks = ((I + 1) // 2) * ((J + 3) // 4)
    if I * J * Q < SERIAL_MACS:
        _gemm_nt_blocks(a, b, out, accumulate, np.int64(0), blocks)        # int64 bounds in both calls: compiled once
    else:
        for it in prange(blocks): _gemm_nt_blocks(a, b, out, accumulate, np.int64(it), np.int64(it) + 1)

def apply_gemm_nt(a, b, out, accumulate):
    """`gemm_nt` (out (+)= a @ b.T), small products straight to its serial blocks on the calling thread, as `gemm_nt`
    runs them: a network whose products are all small (a toy problem's MLP; the small ResNet-18's classifier) never
    compiles the parallel kernel, whose parallel loop alone is about a second of a cold start (as `kernels.act.apply_act`)"""
    (I, Q), J = a.shape, b.shape[0]
    if I * J * Q < SERIAL_MACS: _gemm_nt_blocks(a, b, out, accumulate, 0, ((I + 1) // 2) * ((J + 3) // 4))
    else: gemm_nt(a, b, out, accumulate)

@jit(parallel=True)
def rank_update(a,            # (Q, I), Q small (a batch)
                b,            # (Q, J)
                out,          # out: (I, J)
                accumulate):  # add to out instead of overwriting it?
    """out (+)= a.T @ b for a short Q: Q rank-one updates of `out`, row by row. Each row of `out` is read and written once
    (it stays in cache while the Q updates pass over it), so a large, memory-bound product like a fully connected layer's
    weight gradient at batch 1-16 costs one pass over `out`, and no transposed copies or temporary. Parallel over rows;
    every element is summed in the order q = 0, 1, ... whatever the number of threads."""
    Q, I = a.shape
    J = b.shape[1]
    zero = out.dtype.type(0)
    for i in prange(I):
        row = out[i]
        if not accumulate:
            for j in range(J): row[j] = zero
        for q in range(Q):
            s, bq = a[q, i], b[q]
            for j in range(J): row[j] += s * bq[j]

@jit()
def tap_offsets(C, kh, kw, P, Wp):
    """Offset o_t = c*P + r*Wp + s of every filter tap t = (c, r, s) in a flattened image of C planes with rows of Wp values,
    each plane P values after the one before (P = Hp*Wp for a (C, Hp, Wp) array)"""
    offs = np.empty(C * kh * kw, np.int64)
    for c in range(C):
        for r in range(kh):
            for s in range(kw): offs[(c * kh + r) * kw + s] = c * P + r * Wp + s
    return offs

@jit()
def wide_rows_two_filters(xf,     # one padded image, flattened (C*Hp*Wp,)
                          offs,   # offset of every filter tap in xf (`tap_offsets`)
                          wf,     # filters, flattened (K, C*kh*kw)
                          b,      # bias (K,)
                          k0, k1, # the two filters
                          acc):   # out: the two wide outputs (2, M)
    """acc[q, p] = b[k_q] + sum_t wf[k_q, t] xf[p + offs[t]] for the filters k0, k1: four shifted input vectors per pass
    are added to both accumulator rows (8 multiply-adds per 6 loads), all of it in L1/L2"""
    M, T = acc.shape[1], len(offs)
    acc0, acc1 = acc[0], acc[1]
    acc0[:] = b[k0]
    acc1[:] = b[k1]
    t = 0
    while t + 4 <= T:
        x0, x1 = xf[offs[t]:offs[t] + M], xf[offs[t + 1]:offs[t + 1] + M]
        x2, x3 = xf[offs[t + 2]:offs[t + 2] + M], xf[offs[t + 3]:offs[t + 3] + M]
        a0, a1, a2, a3 = wf[k0, t], wf[k0, t + 1], wf[k0, t + 2], wf[k0, t + 3]
        c0, c1, c2, c3 = wf[k1, t], wf[k1, t + 1], wf[k1, t + 2], wf[k1, t + 3]
        for p in range(M):
            v0, v1, v2, v3 = x0[p], x1[p], x2[p], x3[p]
            acc0[p] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
            acc1[p] += c0 * v0 + c1 * v1 + c2 * v2 + c3 * v3
        t += 4
    while t < T:
        x0, a0, c0 = xf[offs[t]:offs[t] + M], wf[k0, t], wf[k1, t]
        for p in range(M):
            acc0[p] += a0 * x0[p]
            acc1[p] += c0 * x0[p]
        t += 1

GAP = 8             # zeros after each plane of the direct kernels' scratch images: their wide rows are rounded up to a
                    # multiple of 8 values (whole vectors, no scalar remainder loop), and the values read past a plane's
                    # last row are zeros of its own

@jit()
def whole_vectors(M):
    "M rounded up to a multiple of 8: a wide output computed in whole vectors of up to 8 float32 values"
    return (M + 7) // 8 * 8

@jit()
def pad_image(x, ph, pw, buf, P):
    """buf[c*P:c*P + Hp*Wp] = x[c] padded, for every plane of one image x (C, H, W), into a flat scratch image `buf` whose
    planes lie P values apart; the borders and gaps of `buf` must already be zero"""
    C, H, W = x.shape
    Hp, Wp = H + 2 * ph, W + 2 * pw
    for c in range(C): to_inside(x[c], ph, pw, buf[c * P:c * P + Hp * Wp].reshape(Hp, Wp))

@jit()
def keep_valid_columns(acc, Wp, out):
    "out[q, i, j] = acc[q, i*Wp + j]: the OW valid columns of every wide row of len(out) wide outputs acc (Q, M)"
    OH, OW = out.shape[1], out.shape[2]
    for q in range(out.shape[0]):
        o, a = out[q], acc[q]
        for i in range(OH):
            for j in range(OW): o[i, j] = a[i * Wp + j]

@jit(parallel=True)
def conv_direct_forward(x,      # input (N, C, H, W), unpadded
                        ph, pw, # padding
                        w,      # filters (K, C, kh, kw)
                        b,      # bias (K,)
                        groups, # items per image: the filter pairs go in this many groups (1 unless the batch is small)
                        out):   # out: (N, K, OH, OW), stride 1
    """Stride-1 convolution without a patch matrix: y_wide[k, p] = b[k] + sum_t w[k, t] xflat[p + o_t] on wide rows of length
    Wp = W + 2pw, xflat one padded image. Parallel over (image, group of filter pairs); each item pads its image into a
    scratch array of its own, which stays in cache (the padded batch never goes through memory), then runs over the
    ~OH*Wp positions of a wide output (`whole_vectors` of them) for each pair of filters, adding four shifted input
    vectors to two accumulator rows (8 multiply-adds per 6 loads)."""
    N, C, H, W = x.shape
    K, _, kh, kw = w.shape
    Hp, Wp = H + 2 * ph, W + 2 * pw
    OH, OW = out.shape[2], out.shape[3]
    M, T, P = whole_vectors((OH - 1) * Wp + OW), C * kh * kw, Hp * Wp + GAP   # wide output length, taps, plane stride
    offs, wf = tap_offsets(C, kh, kw, P, Wp), w.reshape(K, T)
    KP = (K + 1) // 2
    for ng in prange(N * groups):
        n, g = ng // groups, ng % groups
        xf = np.zeros(C * P, x.dtype)
        pad_image(x[n], ph, pw, xf, P)
        acc = np.empty((2, M), x.dtype)
        for kp in range(g * KP // groups, (g + 1) * KP // groups):
            k0 = 2 * kp
            k1 = min(k0 + 1, K - 1)                          # an odd last filter is computed twice, stored once
            wide_rows_two_filters(xf, offs, wf, b, k0, k1, acc)
            keep_valid_columns(acc, Wp, out[n, k0:k1 + 1])

@jit(parallel=True)
def to_wide_rows(dout,  # output gradient (N, K, OH, OW)
          Wp,       # row length of the wide layout (the padded input's width)
          gw):      # out: (N, K, (OH-1)*Wp + OW), zero in the Wp - OW gap after every row
    """gw[n, k, i*Wp + j] = dout[n, k, i, j], zeros in the gaps: the output gradient on wide rows.
    Parallel over the N*K planes; the inner loops copy one row of OW values and zero the gap after it."""
    N, K, OH, OW = dout.shape
    for nk in prange(N * K):
        n, k = nk // K, nk % K
        row = gw[n, k]
        for i in range(OH):
            o = i * Wp
            for j in range(OW): row[o + j] = dout[n, k, i, j]
            row[o + OW:o + Wp] = 0

@jit()
def filter_pair_gradient(ga, gb,  # the wide rows of two filters' output gradient (M,) for one image
                         xf,      # that image padded, flattened (C*Hp*Wp,)
                         offs,    # offset of every filter tap in xf (`tap_offsets`)
                         p0, p1,  # out: the two filters' gradients (T,), added to
                         two):    # are they two filters (else p1 is p0's filter and gets nothing)?
    """p0[t] += sum_p ga[p] xf[p + o_t], p1[t] += sum_p gb[p] xf[p + o_t]: dot products of two gradient rows with four
    shifted input vectors per pass (8 running sums in the input's dtype, 8 multiply-adds per 6 loads)"""
    M, T, zero = len(ga), len(offs), xf.dtype.type(0)
    t = 0
    while t + 4 <= T:
        x0, x1 = xf[offs[t]:offs[t] + M], xf[offs[t + 1]:offs[t + 1] + M]
        x2, x3 = xf[offs[t + 2]:offs[t + 2] + M], xf[offs[t + 3]:offs[t + 3] + M]
        s0 = s1 = s2 = s3 = u0 = u1 = u2 = u3 = zero
        for p in range(M):
            a, c = ga[p], gb[p]
            v0, v1, v2, v3 = x0[p], x1[p], x2[p], x3[p]
            s0 += a * v0; s1 += a * v1; s2 += a * v2; s3 += a * v3
            u0 += c * v0; u1 += c * v1; u2 += c * v2; u3 += c * v3
        p0[t] += s0; p0[t + 1] += s1; p0[t + 2] += s2; p0[t + 3] += s3
        if two: p1[t] += u0; p1[t + 1] += u1; p1[t + 2] += u2; p1[t + 3] += u3
        t += 4
    while t < T:
        x0, s0, u0 = xf[offs[t]:offs[t] + M], zero, zero
        for p in range(M):
            s0 += ga[p] * x0[p]
            u0 += gb[p] * x0[p]
        p0[t] += s0
        if two: p1[t] += u0
        t += 1

@jit(parallel=True)
def conv_direct_backward_weight(gw,      # wide output gradient (N, K, M), from `to_wide_rows` or the fused pooling backward
                                xp,      # padded input (N, C, Hp, Wp)
                                parts):  # out: filter gradient of each of NB slices of the batch (NB, K, C, kh, kw)
    """parts[b, k, t] = sum over the images n of slice b and the wide positions p of g_wide[n, k, p] xflat[n, p + o_t].
    Parallel over (batch slice, pair of filters), so that every item owns its sums (`filter_pair_gradient`)."""
    N, C, Hp, Wp = xp.shape
    NB, K, _, kh, kw = parts.shape
    offs, pf = tap_offsets(C, kh, kw, Hp * Wp, Wp), parts.reshape(NB, K, C * kh * kw)
    KP = (K + 1) // 2
    for it in prange(NB * KP):
        b, k0 = it // KP, 2 * (it % KP)
        k1 = min(k0 + 1, K - 1)
        p0, p1 = pf[b, k0], pf[b, k1]
        p0[:] = 0
        p1[:] = 0
        for n in range(b * N // NB, (b + 1) * N // NB):
            filter_pair_gradient(gw[n, k0], gw[n, k1], xp[n].reshape(C * Hp * Wp),
                                 offs, p0, p1, k1 > k0)

@jit(parallel=True)
def conv_direct_backward_same(dout,   # output gradient (N, K, OH, OW) of a layer with "same" padding (2ph + 1 = kh,
                              x,      # its input (N, C, H, W), unpadded                          2pw + 1 = kw)
                              ph, pw, # the padding
                              wflip,  # the filters flipped, channels swapped: wflip[c, k, r, s] = w[k, c, kh-1-r, kw-1-s]
                              parts,  # out: filter gradient of each of NB slices of the batch (NB, K, C, kh, kw)
                              dx):    # out: dE/dx (N, C, H, W)
    """Both gradients of a direct layer with "same" padding, image by image. The image's output gradient, padded by (kh-1-ph,
    kw-1-pw) = (ph, pw) in a scratch array, has rows as long as the padded input's: read from (ph, pw) on it is the wide
    rows of the filter gradient (`filter_pair_gradient`, with the image padded in a second scratch array), and convolved
    with the flipped filters (`wide_rows_two_filters`) it is dE/dx, the full correlation. Parallel over NB slices of the
    batch, each owning its filter-gradient sums; both scratch arrays stay in cache, and dE/dy and x are read once."""
    N, C, H, W = x.shape
    NB, K, _, kh, kw = parts.shape
    Hp, Wp = H + 2 * ph, W + 2 * pw
    M, T, P = whole_vectors((H - 1) * Wp + W), C * kh * kw, Hp * Wp + GAP   # wide rows of dE/dy and dE/dx alike
    offs_x, offs_g = tap_offsets(C, kh, kw, P, Wp), tap_offsets(K, kh, kw, P, Wp)                   # (H = OH, W = OW)
    pf, wff, start = parts.reshape(NB, K, T), wflip.reshape(C, K * kh * kw), ph * Wp + pw
    zeros = np.zeros(C, x.dtype)
    for b in prange(NB):
        pb = pf[b]
        pb[:] = 0
        xf, gf = np.zeros(C * P, x.dtype), np.zeros(K * P, x.dtype)
        acc = np.empty((2, M), x.dtype)
        for n in range(b * N // NB, (b + 1) * N // NB):
            pad_image(x[n], ph, pw, xf, P)
            pad_image(dout[n], ph, pw, gf, P)
            for k0 in range(0, K, 2):                        # dE/dw (the gradient's rows read past M are zeros:
                k1 = min(k0 + 1, K - 1)                      # its padding, and the plane's GAP)
                filter_pair_gradient(gf[k0 * P + start:k0 * P + start + M], gf[k1 * P + start:k1 * P + start + M],
                                     xf, offs_x, pb[k0], pb[k1], k1 > k0)
            for c0 in range(0, C, 2):                        # dE/dx
                c1 = min(c0 + 1, C - 1)
                wide_rows_two_filters(gf, offs_g, wff, zeros, c0, c1, acc)
                keep_valid_columns(acc, Wp, dx[n, c0:c1 + 1])

@jit(parallel=True)
def conv_direct_backward_input(gw,      # wide output gradient from `to_wide_rows` (N, K, M)
                               w,       # filters (K, C, kh, kw)
                               dxp):    # out: gradient of the padded input (N, C, Hp, Wp), overwritten
    """dxflat[n, c, p + o_t] += sum_k w[k, c, t] g_wide[n, k, p] for every tap t = (r, s), o_t = r*Wp + s.
    Parallel over the N*C planes of `dxp` (one writer per plane); the inner loop adds four gradient rows, weighted by
    one tap of four filters, to the stretch of the plane that tap reaches (4 multiply-adds per 5 loads and 1 store)."""
    N, C, Hp, Wp = dxp.shape
    K, _, kh, kw = w.shape
    T, M = kh * kw, gw.shape[2]
    offs, wf = tap_offsets(np.int64(1), kh, kw, Hp * Wp, Wp), w.reshape(K, C, T)   # an int64 1, not a literal: one compiled tap_offsets
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        acc = dxp[n, c].reshape(Hp * Wp)
        acc[:] = 0
        k = 0
        while k < K:
            kb = min(4, K - k)                                 # filters in this block: 4, and 1 to 3 at the end
            g0, g1, g2, g3 = gw[n, k], gw[n, k + min(1, kb - 1)], gw[n, k + min(2, kb - 1)], gw[n, k + min(3, kb - 1)]
            for t in range(T):
                dst, a0 = acc[offs[t]:offs[t] + M], wf[k, c, t]
                if kb == 4:
                    a1, a2, a3 = wf[k + 1, c, t], wf[k + 2, c, t], wf[k + 3, c, t]
                    for p in range(M): dst[p] += a0 * g0[p] + a1 * g1[p] + a2 * g2[p] + a3 * g3[p]
                elif kb >= 2:
                    a1 = wf[k + 1, c, t]
                    for p in range(M): dst[p] += a0 * g0[p] + a1 * g1[p]
                else:
                    for p in range(M): dst[p] += a0 * g0[p]
            k += min(kb, 2) if kb < 4 else 4
WIDE_TILE = 24      # positions of a wide-row register tile: three vectors (times four filters: 12 of the 16 AVX2 registers)

@jit()
def wide_rows_four_filters(xf,     # one padded float32 image, flattened, planes P values apart, WIDE_TILE zeros after it
                           offs,   # offset of every filter tap in xf (`tap_offsets`)
                           wf,     # filters as columns, flattened (T, K4): wf[t*K4 + k], K4 a multiple of 4
                           K4, k0, # its row length; the first of the four filters
                           acc):   # out: the four filters' wide outputs (4, Mr), Mr a multiple of WIDE_TILE
    """acc[j, p] = sum_t wf[t, k0 + j] xf[p + offs[t]]: a register tile of 24 positions (three vectors) times four filters
    is 12 vectors of running sums, while the loop over the taps adds three input vectors times four broadcast weights
    (12 multiply-adds per 7 loads)"""
    Mr, af = acc.shape[1], acc.reshape(-1)
    for p0 in range(0, Mr, WIDE_TILE):
        a00, a01, a02, a10, a11, a12 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
        a20, a21, a22, a30, a31, a32 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
        for t in range(len(offs)):
            o, wb = offs[t] + p0, t * K4 + k0
            x0, x1, x2 = vload(xf, o), vload(xf, o + 8), vload(xf, o + 16)
            v = vbroadcast(wf, wb); a00 = vfma(v, x0, a00); a01 = vfma(v, x1, a01); a02 = vfma(v, x2, a02)
            v = vbroadcast(wf, wb + 1); a10 = vfma(v, x0, a10); a11 = vfma(v, x1, a11); a12 = vfma(v, x2, a12)
            v = vbroadcast(wf, wb + 2); a20 = vfma(v, x0, a20); a21 = vfma(v, x1, a21); a22 = vfma(v, x2, a22)
            v = vbroadcast(wf, wb + 3); a30 = vfma(v, x0, a30); a31 = vfma(v, x1, a31); a32 = vfma(v, x2, a32)
        vstore(af, p0, a00); vstore(af, p0 + 8, a01); vstore(af, p0 + 16, a02)
        vstore(af, Mr + p0, a10); vstore(af, Mr + p0 + 8, a11); vstore(af, Mr + p0 + 16, a12)
        vstore(af, 2 * Mr + p0, a20); vstore(af, 2 * Mr + p0 + 8, a21); vstore(af, 2 * Mr + p0 + 16, a22)
        vstore(af, 3 * Mr + p0, a30); vstore(af, 3 * Mr + p0 + 8, a31); vstore(af, 3 * Mr + p0 + 16, a32)

@jit()
def wide_tile_outputs(acc, Wp, b, k0, out):
    "out[k0 + j, i, l] = acc[j, i*Wp + l] + b[k0 + j] for the valid filters k0 + j < len(out): a tile's four wide outputs"
    OH, OW = out.shape[1], out.shape[2]
    for j in range(min(4, out.shape[0] - k0)):
        o, a, bk = out[k0 + j], acc[j], b[k0 + j]
        for i in range(OH):
            for l in range(OW): o[i, l] = a[i * Wp + l] + bk

@jit(parallel=True)
def conv_direct_tiles_forward(x,      # input (N, C, H, W), float32, unpadded
                              ph, pw, # padding
                              wf,     # filters as columns (C*kh*kw, K4), rows (c, r, s), zero from column K on
                              kh, kw, # filter size
                              b,      # bias (K,)
                              groups, # items per image: its groups of four filters in this many parts (`direct_groups`)
                              out):   # out: (N, K, OH, OW), stride 1
    """The direct kernels' convolution on wide rows (`conv_direct_forward`) with register tiles: each image is padded
    into a scratch array of its own (cache-resident), and `wide_rows_four_filters` computes its wide outputs four
    filters at a time. Parallel over (image, part of its filter groups)."""
    N, C, H, W = x.shape
    K, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    Hp, Wp = H + 2 * ph, W + 2 * pw
    M, P = (OH - 1) * Wp + OW, Hp * Wp + GAP
    Mr, KG = -(-M // WIDE_TILE) * WIDE_TILE, -(-K // 4)
    offs, K4 = tap_offsets(C, kh, kw, P, Wp), wf.shape[1]
    for ng in prange(N * groups):
        n, g = ng // groups, ng % groups
        xf = np.zeros(C * P + WIDE_TILE, x.dtype)                   # tiles past M read up to WIDE_TILE values beyond
        pad_image(x[n], ph, pw, xf, P)
        acc = np.empty((4, Mr), x.dtype)
        for kg in range(g * KG // groups, (g + 1) * KG // groups):
            wide_rows_four_filters(xf, offs, wf.reshape(-1), K4, 4 * kg, acc)
            wide_tile_outputs(acc, Wp, b, 4 * kg, out[n])

@jit()
def filter_gradient_tiles(gf,     # one image's output gradient, padded: planes P values apart, read from `start` on
                          start,  # where the wide rows of each plane begin
                          P, M,   # plane stride, wide positions (a multiple of 8; the rows read past them are zeros)
                          xf,     # the image padded, flattened
                          offs,   # offset of every filter tap in xf
                          pk):    # out: the filter gradient (K, T), added to
    """pk[k, t] += sum_p g_wide[k, p] xf[p + offs[t]]: register tiles of four filters times two taps, 8 vectors of running
    sums over the positions (8 multiply-adds per 6 loads), each summed across its values at the end. A last partial
    tile repeats its last filter or tap and adds only the valid sums"""
    K, T = pk.shape
    for k0 in range(0, K, 4):
        k1, k2, k3 = min(k0 + 1, K - 1), min(k0 + 2, K - 1), min(k0 + 3, K - 1)
        g0, g1, g2, g3 = k0 * P + start, k1 * P + start, k2 * P + start, k3 * P + start
        for t0 in range(0, T, 2):
            t1 = min(t0 + 1, T - 1)
            o0, o1 = offs[t0], offs[t1]
            a00, a01, a10, a11, a20, a21, a30, a31 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
            for p in range(0, M, 8):
                x0, x1 = vload(xf, o0 + p), vload(xf, o1 + p)
                v = vload(gf, g0 + p); a00 = vfma(v, x0, a00); a01 = vfma(v, x1, a01)
                v = vload(gf, g1 + p); a10 = vfma(v, x0, a10); a11 = vfma(v, x1, a11)
                v = vload(gf, g2 + p); a20 = vfma(v, x0, a20); a21 = vfma(v, x1, a21)
                v = vload(gf, g3 + p); a30 = vfma(v, x0, a30); a31 = vfma(v, x1, a31)
            two = t1 > t0
            pk[k0, t0] += vsum(a00)
            if two: pk[k0, t1] += vsum(a01)
            if k1 > k0:
                pk[k1, t0] += vsum(a10)
                if two: pk[k1, t1] += vsum(a11)
            if k2 > k1:
                pk[k2, t0] += vsum(a20)
                if two: pk[k2, t1] += vsum(a21)
            if k3 > k2:
                pk[k3, t0] += vsum(a30)
                if two: pk[k3, t1] += vsum(a31)

@jit(parallel=True)
def conv_direct_tiles_backward_same(dout,   # output gradient (N, K, OH, OW), float32, of a layer with "same" padding
                                    x,      # its input (N, C, H, W), unpadded
                                    ph, pw, # the padding
                                    wflip,  # the flipped filters as columns (K*kh*kw, C4), rows (k, r, s): w[k, c, kh-1-r,
                                            # kw-1-s] in column c, zero from column C on
                                    parts,  # out: filter gradient of each of NB slices of the batch (NB, K, C, kh, kw)
                                    dx):    # out: dE/dx (N, C, H, W)
    """`conv_direct_backward_same` with register tiles: per image, the output gradient padded by (ph, pw) in a scratch
    array gives the filter gradient (`filter_gradient_tiles`, with the image padded in a second one) and, convolved
    with the flipped filters four input channels at a time (`wide_rows_four_filters`), dE/dx. Parallel over NB slices
    of the batch, each owning its filter-gradient sums"""
    N, C, H, W = x.shape
    NB, K, _, kh, kw = parts.shape
    Hp, Wp = H + 2 * ph, W + 2 * pw
    M, T, P = whole_vectors((H - 1) * Wp + W), C * kh * kw, Hp * Wp + GAP   # wide rows of dE/dy and dE/dx alike
    Mr = -(-M // WIDE_TILE) * WIDE_TILE
    offs_x, offs_g = tap_offsets(C, kh, kw, P, Wp), tap_offsets(K, kh, kw, P, Wp)
    pf, start, zeros, C4 = parts.reshape(NB, K, T), ph * Wp + pw, np.zeros(C, x.dtype), wflip.shape[1]
    for b in prange(NB):
        pb = pf[b]
        pb[:] = 0
        xf, gf = np.zeros(C * P + WIDE_TILE, x.dtype), np.zeros(K * P + WIDE_TILE, x.dtype)
        acc = np.empty((4, Mr), x.dtype)
        for n in range(b * N // NB, (b + 1) * N // NB):
            pad_image(x[n], ph, pw, xf, P)
            pad_image(dout[n], ph, pw, gf, P)
            filter_gradient_tiles(gf, start, P, M, xf, offs_x, pb)
            for c0 in range(0, C, 4):
                wide_rows_four_filters(gf, offs_g, wflip.reshape(-1), C4, c0, acc)
                wide_tile_outputs(acc, Wp, zeros, c0, dx[n])
