"""The convolution engine: argument checks, reusable buffers, the choice among six algorithms, and the one forward and
backward step of a convolution, used by `Conv2d`, `conv2d` and the fused layers alike.

Algorithms, chosen from the shapes alone (no API change): a *dense* layer (the filter covers the whole padded input: one
matrix product per batch), a *pointwise* layer (1x1 filters, no padding, any stride: no patch matrix; one matrix product
per image on the input as it is or, with many input channels, one for the batch on the input copied into the GEMM's
layout), the *direct* kernels (stride 1 and few weights, LeNet-5's layers: convolve on wide rows, no patch matrix), the
*register-tile* kernels (float32, at least 16 channels in and out, or 8 in with a stride, filters that stay in cache:
the small ResNet-18's layers from its 16-channel ones on; they convolve a channels-last copy of the input with tiles of
results held in vector registers, no patch matrix, and compute dE/dx as a forward convolution of the padded output
gradient, or with a stride from patch gradients), and
*im2col* (any stride: a patch matrix and one BLAS product, per image for layers with many output positions). The
dense path pads the input first; im2col pads each plane as it copies it, the direct kernels each image. A direct layer
with "same" padding and enough input channels computes dE/dx as a forward convolution too (`use_full_correlation`), in
one kernel with dE/dw."""
import numpy as np
from llvmlite import binding as _llvm
from numba import get_num_threads

from ..core import as_pair, check_allocation, check_array, check_grad
from ..kernels import config
from ..kernels.conv import (col2im, col2im_nhwc, conv_direct_backward_input, conv_direct_backward_same,
                            conv_direct_backward_weight, conv_direct_forward, conv_direct_tiles_backward_same,
                            conv_direct_tiles_forward, conv_nhwc_forward, conv_nhwc_weight_grad,
                            gemm_to_nchw, im2col, im2col_nhwc, matmul_nt_split, nchw_to_gemm, nchw_to_nhwc, nhwc_to_nchw,
                            to_wide_rows, TILE_FILTERS)
from .matmul import matmul_nn, matmul_nt, matmul_tn


def check_conv(x,        # input (N, C, H, W)
               w,        # filters (K, C, kh, kw)
               b,        # bias (K,) or None
               stride,   # int or (sh, sw)
               padding): # int or (ph, pw)
    "Validate a convolution's arguments; return x, w, b (C-contiguous), stride, padding as pairs and the output size (OH, OW)"
    x = check_array(x, 'x', shape=('N', 'C', 'H', 'W'), hint='a batch of images in NCHW layout; use x[None] for one image')
    w = check_array(w, 'w', shape=('K', 'C', 'kh', 'kw'), hint='filters in the layout (out_channels, in_channels, kh, kw)')
    if w.dtype != x.dtype: raise TypeError(f"w has dtype {w.dtype} but x has dtype {x.dtype}: convert one of them")
    (N, C, H, W), (K, Cw, kh, kw) = x.shape, w.shape
    if 0 in (C, H, W, K, kh, kw): raise ValueError(f"x {x.shape} and w {w.shape} must not be empty (only N may be 0)")
    if C != Cw:
        raise ValueError(f"x has {C} channels but w expects {Cw}: w has shape (K, C, kh, kw) = {w.shape}, and every filter "
                         "spans all input channels")
    if b is not None:
        b = check_array(b, 'b', shape=(K,), hint='one bias per filter')
        if b.dtype != x.dtype: raise TypeError(f"b has dtype {b.dtype} but x has dtype {x.dtype}")
    (sh, sw), (ph, pw) = as_pair(stride, 'stride'), as_pair(padding, 'padding', low=0)
    for dim, I, F, P in (('height', H, kh, ph), ('width', W, kw, pw)):
        if F > I + 2 * P:
            raise ValueError(f"the filter does not fit: its {dim} {F} is larger than the padded input's {dim} "
                             f"{I} + 2*{P} = {I + 2 * P} (w has shape {w.shape}, x has shape {x.shape})")
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1       # floored, as the layers do
    sh, sw = min(sh, H + 2 * ph), min(sw, W + 2 * pw)        # a longer stride gives the same (one) output row or column
    check_allocation((N, C, H + 2 * ph, W + 2 * pw), x.dtype, f"x {x.shape} padded with padding={(ph, pw)}")
    check_allocation((N, K, OH, OW), x.dtype, f"the output of x {x.shape} with stride={(sh, sw)}, padding={(ph, pw)}")
    return x, w, b, (sh, sw), (ph, pw), (OH, OW)


def use_direct(C, K, kh, kw):  # the filters' shape
    "Use the direct kernels (for stride 1)? For layers whose filters hold few weights in all, like LeNet-5's"
    return K * C * kh * kw <= config.DIRECT_MAX_WEIGHTS


def use_direct_tiles(dtype):
    """Run the direct kernels with register tiles (`conv_direct_tiles_forward`, `conv_direct_tiles_backward_same`)? For
    float32 on a CPU with AVX2 and FMA"""
    return dtype == np.float32 and VECTOR_FMA and config.DIRECT_REGISTER_TILES


def use_full_correlation(C, kh, kw, padding):  # input channels, the filters' size, the padding (ph, pw)
    """Compute a direct layer's dE/dx as a forward convolution of the output gradient, padded by (kh-1-ph, kw-1-pw), with
    the filters flipped and the roles of the channels swapped? For "same" padding (2ph = kh - 1, 2pw = kw - 1) the padded
    gradient is also the wide rows of the filter gradient (no `to_wide_rows`) and the result is dE/dx itself (no padded
    dE/dx to crop): `conv_direct_backward_same` computes both gradients image by image. With few input channels the
    forward kernel would have too few filters to work on"""
    return 2 * padding[0] == kh - 1 and 2 * padding[1] == kw - 1 and C >= config.FULL_CORRELATION_MIN_C


def direct_groups(N, K):  # images, filters
    """Items per image of `conv_direct_forward`: its pairs of filters in this many groups, so that a small batch still
    gives every thread work (1 from two images per thread)"""
    return max(1, min((K + 1) // 2, -(-2 * get_num_threads() // max(N, 1))))


def use_channels_last(C, OW, M):  # input channels, output width, output positions of the batch (N*OH*OW)
    """Take im2col's patches from a channels-last copy of the input? For many channels on small maps (short output rows),
    unless the batch has so few output positions that transposing the filters (twice a step) costs more than it saves"""
    return C >= config.CHANNELS_LAST_MIN_C and OW <= config.CHANNELS_LAST_MAX_OW and M >= config.CHANNELS_LAST_MIN_M


def cache_parts(N, size):  # images, values per image of a patch matrix
    """The images of a channels-last patch matrix in nearly equal parts of at most `config.CHANNELS_LAST_PART` values
    (one image where a single one holds more), as (start, stop) ranges: each part's patches are copied and multiplied,
    or computed and added back, while they are in the cache, instead of a pass over the whole matrix in memory and
    another one after it"""
    parts = -(-N // max(1, config.CHANNELS_LAST_PART // size))      # of at most that many images (at least one)
    bounds = [N * i // parts for i in range(parts + 1)] if parts else [0]
    return list(zip(bounds[:-1], bounds[1:]))


def _has_vector_fma():
    "Does this CPU have AVX2 and FMA (x86-64-v3 or later), which the register-tile kernels are fast with?"
    try: features = _llvm.get_host_cpu_features()
    except RuntimeError: return False             # LLVM cannot tell: not x86, or an unknown CPU
    return bool(features.get('avx2') and features.get('fma'))


VECTOR_FMA = _has_vector_fma()


def use_register_tiles(C, K, kh, kw, stride):  # the filters' shape, the stride (sh, sw)
    """Use the register-tile kernels (for a float32 layer)? For layers whose filters stay in cache
    (`config.REGISTER_TILE_MAX_WEIGHTS`) with at least `config.REGISTER_TILE_MIN_C` channels in and out, or with a
    stride, from `config.REGISTER_TILE_STRIDED_MIN_C` input channels (with fewer channels the direct kernels are faster
    for stride 1, im2col for a stride), on a CPU with AVX2 and FMA; elsewhere the kernels are correct but slower"""
    low = config.REGISTER_TILE_MIN_C if tuple(stride) == (1, 1) else config.REGISTER_TILE_STRIDED_MIN_C
    return (VECTOR_FMA and C >= low and K >= config.REGISTER_TILE_MIN_C
            and K * C * kh * kw <= config.REGISTER_TILE_MAX_WEIGHTS)


def flip_fits(stride, padding, kh, kw):
    """Compute dE/dx of a register-tile layer as a forward convolution of the output gradient padded by (kh-1-ph,
    kw-1-pw), with the filters flipped? For stride 1 and a padding below the filter's size (else from patch gradients)"""
    return tuple(stride) == (1, 1) and padding[0] < kh and padding[1] < kw


def tile_filters(K):  # filters
    "K rounded up to whole tiles of the register-tile kernels (16 filters)"
    return -(-K // TILE_FILTERS) * TILE_FILTERS


def use_pointwise(kh, kw, ph, pw):  # the filters' size, the padding
    "Compute a 1x1 convolution without padding as a matrix product per image (any stride)?"
    return kh == kw == 1 and ph == pw == 0


class ConvEngine:
    "Forward and backward step of one convolution with reusable buffers; forward keeps what backward needs"
    def __init__(self): self._buffers, self.saved = {}, None

    def buffer(self, name, shape, dtype):
        "A C-contiguous array of `shape` from the reusable buffer `name` (contents undefined)"
        size = int(np.prod(shape))
        buf = self._buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.size < size: buf = self._buffers[name] = np.empty(size, dtype)
        return buf[:size].reshape(shape)

    def pad(self, x, ph, pw, name='xp'):
        "x with ph rows and pw columns of zeros around every plane (x itself when there is no padding), in buffer `name`"
        if ph == pw == 0: return x
        N, C, H, W = x.shape
        xp = self.buffer(name, (N, C, H + 2 * ph, W + 2 * pw), x.dtype)
        xp[:, :, :ph] = 0; xp[:, :, ph + H:] = 0; xp[:, :, :, :pw] = 0; xp[:, :, :, pw + W:] = 0
        xp[:, :, ph:ph + H, pw:pw + W] = x
        return xp

    def forward(self, x, w, b, stride, padding):  # as `check_conv`, which validates them
        "y = conv(x, w) + b: (N, C, H, W) -> (N, K, OH, OW)"
        x, w, b, (sh, sw), (ph, pw), (OH, OW) = check_conv(x, w, b, stride, padding)
        (N, C, H, W), (K, _, kh, kw) = x.shape, w.shape
        out = np.empty((N, K, OH, OW), x.dtype)
        L = OH * OW
        chunk = max(1, config.PATCH_BUDGET // (C * kh * kw * L))        # images per patch matrix
        dense = H + 2 * ph == kh and W + 2 * pw == kw                     # the filter covers the padded input
        pointwise = use_pointwise(kh, kw, ph, pw) and not dense           # 1x1 filters: no patch matrix
        tiles = (not (dense or pointwise) and x.dtype == np.float32
                 and use_register_tiles(C, K, kh, kw, (sh, sw)))          # channels last, results in registers
        direct = (sh, sw) == (1, 1) and use_direct(C, K, kh, kw) and not (dense or pointwise or tiles)
        last = not (direct or dense or pointwise or tiles) and use_channels_last(C, OW, N * L)   # im2col, channels last
        xp = self.pad(x, ph, pw) if dense else x                          # im2col and the direct kernels pad as they go
        xg = wt = None                      # the pointwise input in the GEMM's layout; W^T of the channels-last path
        if pointwise:                                                     # Y_n = W X_n, X_n (C, L): no patch matrix
            if (sh, sw) != (1, 1):                                        # stride: every sh-th row, sw-th column
                xp = self.buffer('xs', (N, C, OH, OW), x.dtype)
                xp[...] = x[:, :, ::sh, ::sw]
            if C >= config.POINTWISE_BATCH_MIN_C:                         # one GEMM for the whole batch,
                xg = self.buffer('xg', (C, N * L), x.dtype)               # Y = W [X_1 ... X_N]
                nchw_to_gemm(xp.reshape(N, C, L), xg)
                y = np.matmul(w.reshape(K, C), xg, out=self.buffer('y', (K, N * L), x.dtype))
                gemm_to_nchw(y, np.zeros(K, x.dtype) if b is None else b, out.reshape(N, K, L))
            else:
                y = out.reshape(N, K, L)
                np.matmul(w.reshape(K, C), xp.reshape(N, C, L), out=y)
                if b is not None: y += b[:, None]
        elif dense:                                                       # Y = X W^T: each image is its own patch
            y = matmul_nt(xp.reshape(N, C * kh * kw), w.reshape(K, C * kh * kw), out.reshape(N, K))
            if b is not None: y += b
        else:
            b = np.zeros(K, x.dtype) if b is None else b                  # the kernels below add a bias
            if direct and use_direct_tiles(x.dtype):                     # filters as columns [(c, r, s), k]
                conv_direct_tiles_forward(x, ph, pw, self.zero_padded('wt', w.reshape(K, -1).T, 4), kh, kw, b,
                                          direct_groups(N, -(-K // 4) * 2), out)   # (counts pairs of filters)
            elif direct: conv_direct_forward(x, ph, pw, w, b, direct_groups(N, K), out)
            elif tiles: xp, wt = self.register_tile_forward(x, w, b, (sh, sw), (ph, pw), out)
            elif last: xp, wt = self.channels_last_forward(x, w, b, (sh, sw), (ph, pw), out, chunk)
            else:
                w2, per_image = w.reshape(K, C * kh * kw), L >= config.GEMM_PER_IMAGE
                if per_image: w2 = np.concatenate((w2, b[:, None]), axis=1)       # the bias as one more weight...
                for n0 in range(0, N, chunk):
                    xs = xp[n0:n0 + chunk]
                    cols = self.buffer('cols', (C * kh * kw + int(per_image), len(xs) * L), x.dtype)
                    im2col(xs, kh, kw, sh, sw, ph, pw, cols[:C * kh * kw])
                    if per_image:                                             # ...times a row of ones
                        cols[-1] = 1
                        for j in range(len(xs)):                              # one GEMM per image, into its output
                            np.matmul(w2, cols[:, j * L:(j + 1) * L], out=out[n0 + j].reshape(K, L))
                    else:
                        y = np.matmul(w2, cols, out=self.buffer('y', (K, len(xs) * L), x.dtype))   # the GEMM
                        gemm_to_nchw(y, b, out[n0:n0 + chunk].reshape(len(xs), K, L))
        self.saved = dict(x_shape=x.shape, xp=xp, xg=xg, wt=wt, w=w, stride=(sh, sw), padding=(ph, pw), direct=direct,
                          dense=dense, channels_last=last, pointwise=pointwise, tiles=tiles, chunk=chunk,
                          out_shape=out.shape, cols_valid=chunk >= N)   # backward may reuse the patch matrix. xp: x
                                                      # padded (dense), padded channels last (channels_last, tiles), or x
        return out

    def direct_backward(self, gw,  # dE/dy on wide rows (N, K, M), from `to_wide_rows` or the fused pooling backward
                        xp,        # the padded input of the forward step
                        w,         # the filters
                        dw,        # filter gradient (K, C, kh, kw) to accumulate into
                        padding,   # the forward step's (ph, pw)
                        x_shape,   # the shape of its unpadded input
                        input_grad=True):  # compute dE/dx? (else return None)
        "The direct kernels' backward step (stride 1): accumulate dE/dw, return dE/dx"
        parts = self.slice_parts(len(xp), w)
        conv_direct_backward_weight(gw, xp, parts)
        dw += parts.sum(0)
        if not input_grad: return None
        dxp = self.input_grad_buffer(xp, padding)
        conv_direct_backward_input(gw, w, dxp)
        return self.crop(dxp, x_shape, padding)

    def slice_parts(self, N, w):  # images, filters
        """Where the direct backward kernels put the filter gradient of each slice of the batch, (NB, K, C, kh, kw), to be
        summed over NB: a fixed number of slices (config.DIRECT_BATCH_SLICES), so that the result does not depend on the
        threads"""
        return self.buffer('parts', (max(1, min(N, config.DIRECT_BATCH_SLICES)),) + w.shape, w.dtype)

    def flipped(self, w):
        "The filters of dE/dx as a convolution: w'[c, k, r, s] = w[k, c, kh-1-r, kw-1-s], (C, K, kh, kw) C-contiguous"
        wf = self.buffer('wflip', (w.shape[1], w.shape[0]) + w.shape[2:], w.dtype)
        wf[...] = w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
        return wf

    def zero_padded(self, name, a, multiple):
        "a with zeros after its last axis, up to a multiple of `multiple` values, in the reusable buffer `name`"
        K = a.shape[-1]
        out = self.buffer(name, a.shape[:-1] + (-(-K // multiple) * multiple,), a.dtype)
        out[..., K:] = 0
        out[..., :K] = a
        return out

    def crop(self, dxp, x_shape, padding):
        "dE/dx from dE/d(padded x): the padding's rows and columns dropped"
        (ph, pw), (H, W) = padding, x_shape[2:]
        return dxp[:, :, ph:ph + H, pw:pw + W].copy() if ph or pw else dxp

    def input_grad_buffer(self, xp, padding):
        "Where dE/d(padded x) goes: a reusable buffer when it is cropped afterwards, else a fresh array (it is returned)"
        return self.buffer('dxp', xp.shape, xp.dtype) if any(padding) else np.empty(xp.shape, xp.dtype)

    def backward(self, dout,   # dE/dy (N, K, OH, OW), validated
                 dw,           # filter gradient (K, C, kh, kw) to accumulate into
                 db,           # bias gradient (K,) to accumulate into, or None
                 input_grad=True):  # compute dE/dx? False for a network's input, which needs none: return None
        "Accumulate dE/dw and dE/db, return dE/dx (None if not `input_grad`)"
        s = self.saved
        xp, w, (sh, sw), padding = s['xp'], s['w'], s['stride'], s['padding']
        N, C = s['x_shape'][:2]
        K, _, kh, kw = w.shape
        dw = check_grad(dw, 'weight.grad', w)
        if db is not None:
            check_grad(db, 'bias.grad', w[:, 0, 0, 0])                    # (K,) in w's dtype, before anything is written
            db += dout.sum((0, 2, 3))
        if s['pointwise']:                                               # dE/dW += sum_n G_n X_n^T, dE/dX_n = W^T G_n
            L = dout.shape[2] * dout.shape[3]                             # (N may be 0)
            g, x3, w2 = dout.reshape(N, K, L), xp.reshape(N, C, L), w.reshape(K, C)
            if s['xg'] is None:
                dw.reshape(K, C)[...] += np.matmul(g, x3.transpose(0, 2, 1)).sum(0)
                if not input_grad: return None
                dxs = np.matmul(w2.T, g).reshape(xp.shape)
            else:                                                         # in the GEMM's layout, as forward
                gg = self.buffer('g', (K, N * L), xp.dtype)
                nchw_to_gemm(g, gg)
                self.add_filter_gradient(dw.reshape(K, C), gg, s['xg'])
                if not input_grad: return None
                dxg = np.matmul(w2.T, gg, out=self.buffer('dcols', (C, N * L), xp.dtype))
                dxs = np.empty(xp.shape, xp.dtype)
                gemm_to_nchw(dxg, np.zeros(C, xp.dtype), dxs.reshape(N, C, L))
            if (sh, sw) == (1, 1): return dxs
            dx = np.zeros(s['x_shape'], xp.dtype)
            dx[:, :, ::sh, ::sw] = dxs
            return dx
        if s['channels_last']: return self.channels_last_backward(dout, xp, w, dw, input_grad)
        if s['tiles']: return self.register_tile_backward(dout, xp, w, dw, input_grad)
        if not (s['dense'] or s['direct']):                               # im2col: x unpadded, padding inside the kernels
            return self.im2col_backward(dout, xp, w, dw, padding, input_grad)
        if s['direct']:                                                   # xp: x unpadded
            if input_grad and use_full_correlation(C, kh, kw, padding):   # both gradients in one kernel, image by image
                parts = self.slice_parts(N, w)
                dx = np.empty(s['x_shape'], xp.dtype)
                if use_direct_tiles(xp.dtype):                            # the flipped filters as columns [(k, r, s), c]
                    wf = self.zero_padded('wflipt', self.flipped(w).reshape(C, -1).T, 4)
                    conv_direct_tiles_backward_same(np.ascontiguousarray(dout), xp, *padding, wf, parts, dx)
                else: conv_direct_backward_same(np.ascontiguousarray(dout), xp, *padding, self.flipped(w), parts, dx)
                dw += parts.sum(0)
                return dx
            xp = self.pad(xp, *padding)
            (OH, OW), Wp = dout.shape[2:], xp.shape[3]
            gw = self.buffer('gw', (N, K, (OH - 1) * Wp + OW), xp.dtype)
            to_wide_rows(dout, Wp, gw)
            return self.direct_backward(gw, xp, w, dw, padding, s['x_shape'], input_grad)
        g, x2, w2 = dout.reshape(N, K), xp.reshape(N, C * kh * kw), w.reshape(K, C * kh * kw)   # dense:
        matmul_tn(g, x2, dw.reshape(K, -1), accumulate=True)             # dE/dW += G^T X
        if not input_grad: return None
        dxp = self.input_grad_buffer(xp, padding)
        matmul_nn(g, w2, dxp.reshape(N, C * kh * kw))                     # dE/dX = G W (N may be 0)
        return self.crop(dxp, s['x_shape'], padding)

    def add_filter_gradient(self, dw2,  # (K, Q) filter gradient, to accumulate into
                            g,             # output gradient in the GEMM's layout (K, M)
                            cols):         # the product's input (Q, M), M = N*OH*OW columns
        """dw2 += G X^T with BLAS. With many columns as (X G^T)^T: the same product, 1.3-1.9x as fast on the zoo's layers,
        though its transposed result must then be added, which costs more than it saves when the columns are few, or
        when the gradient outgrows the cache and the columns are not very many"""
        M, size = g.shape[1], dw2.size
        if M >= config.DW_TRANSPOSED_MIN_COLUMNS and (size <= config.DW_TRANSPOSED_CACHED or M >= config.DW_TRANSPOSED_LONG):
            dw2 += np.matmul(cols, g.T, out=self.buffer('dwt', dw2.shape[::-1], dw2.dtype)).T
        else: dw2 += g @ cols.T

    def register_tile_forward(self, x, w, b, stride, padding, out):   # as `forward`; b not None
        """The register-tile path: the input padded into a channels-last copy (N, Hp, Wp, C), convolved by
        `conv_nhwc_forward` with the filters as columns (`tile_columns`); returns the copy and the columns, for backward"""
        (N, C, H, W), (K, _, kh, kw), (ph, pw) = x.shape, w.shape, padding
        xt = self.buffer('xt', (N, H + 2 * ph, W + 2 * pw, C), x.dtype)
        nchw_to_nhwc(x, ph, pw, xt)
        wt = self.tile_columns('wt', w.transpose(2, 3, 1, 0))            # [(r, s, c), k] = w[k, c, r, s]
        conv_nhwc_forward(xt, wt, self.zero_padded('bt', b, TILE_FILTERS), kh, kw, *stride, out)
        return xt, wt

    def tile_columns(self, name, w4):  # filters as (kh, kw, rows, columns): a view of the layer's filters
        """The register-tile kernels' filters (kh*kw*rows, columns rounded up to 16): w4's values, zeros in the columns
        beyond, in the reusable buffer `name`"""
        kh, kw, R, _ = w4.shape
        return self.zero_padded(name, w4, TILE_FILTERS).reshape(kh * kw * R, -1)

    def register_tile_backward(self, dout, xt, w, dw, input_grad):   # as `backward`; xt from `register_tile_forward`
        """The register-tile path's backward step. The output gradient goes into a channels-last copy with its filters
        rounded up to 16 (zeros), padded by (kh-1-ph, kw-1-pw) where dE/dx is a forward convolution of it (stride 1,
        padding below the filter's size): `conv_nhwc_weight_grad` takes dE/dw from it, and dE/dx is its convolution
        with the filters flipped and the roles of the channels swapped. Otherwise (a stride) dE/dx comes from the patch
        gradients G^T W, added back onto each image by `col2im_nhwc`, in cache-sized parts as on the channels-last path"""
        s = self.saved
        (N, C, H, W), (sh, sw), (ph, pw) = s['x_shape'], s['stride'], s['padding']
        K, _, kh, kw = w.shape
        (OH, OW), Kp = dout.shape[2:], tile_filters(K)
        flip = flip_fits((sh, sw), (ph, pw), kh, kw)
        pa, pb = (kh - 1 - ph, kw - 1 - pw) if flip else (0, 0)
        gt = self.buffer('g', (N, OH + 2 * pa, OW + 2 * pb, Kp), xt.dtype)
        nchw_to_nhwc(dout, pa, pb, gt)
        parts = self.buffer('parts', (max(1, min(N * OH, config.REGISTER_TILE_SLICES)), kh * kw * C, Kp), xt.dtype)
        per_row = sh * xt.shape[2] * C + OW * Kp                           # input and gradient values of an output row
        conv_nhwc_weight_grad(xt, gt, pa, pb, kh, kw, sh, sw, OH, OW, max(1, config.REGISTER_TILE_CHUNK // per_row), parts)
        dw += parts.sum(0).reshape(kh, kw, C, Kp)[..., :K].transpose(3, 2, 0, 1)
        if not input_grad: return None
        dx = np.empty(s['x_shape'], xt.dtype)
        if flip:
            wf = self.buffer('wflip', (kh, kw, Kp, C), xt.dtype)             # w'[(r, s, k), c] = w[k, c, kh-1-r, kw-1-s],
            wf[:, :, K:] = 0                                                  # zero for the filters beyond K
            wf[:, :, :K] = w.transpose(2, 3, 0, 1)[::-1, ::-1]
            wft = self.tile_columns('wflipt', wf)
            conv_nhwc_forward(gt, wft, np.zeros(wft.shape[1], xt.dtype), kh, kw, 1, 1, dx)
            return dx
        self.add_patch_gradients(gt.reshape(N * OH * OW, Kp), s['wt'].T, (kh, kw), OH * OW, dx)   # W (Kp, Q): forward's
        return dx

    def add_patch_gradients(self, g,   # output gradient, one row per output position (N*OH*OW, K)
                            w2,        # filters (K, kh*kw*C), columns (r, s, c)
                            filters,   # (kh, kw)
                            L,         # output positions per image
                            dx):       # out: dE/dx (N, C, H, W) of the images of g
        """dE/dx from the patch gradients G^T W, added back onto each padded image by `col2im_nhwc`: in parts of the batch
        (`cache_parts`), each part's patch gradients computed and added back while they are in cache"""
        s, (kh, kw) = self.saved, filters
        Q = w2.shape[1]
        for a, z in cache_parts(len(dx), L * Q):
            dcolst = np.matmul(g[a * L:z * L], w2, out=self.buffer('dcols', ((z - a) * L, Q), g.dtype))
            col2im_nhwc(dcolst, kh, kw, *s['stride'], *s['padding'], dx[a:z])

    def channels_last_forward(self, x, w, b, stride, padding, out, chunk):   # as `forward`; b not None
        """im2col on a channels-last copy of the input: Y^T = X_col^T W^T, one row of X_col^T per output position. Returns
        the copy (N, Hp, Wp, C), which backward takes its patches from again when the batch went in chunks, and W^T"""
        (N, C, H, W), (K, _, kh, kw), (sh, sw), (ph, pw) = x.shape, w.shape, stride, padding
        L, Q = out.shape[2] * out.shape[3], C * kh * kw
        xt = self.buffer('xt', (N, H + 2 * ph, W + 2 * pw, C), x.dtype)
        nchw_to_nhwc(x, ph, pw, xt)
        wt = np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(Q, K)   # W^T, rows (r, s, c) as the patches'
        for n0 in range(0, N, chunk):
            nb = min(chunk, N - n0)
            colst = self.buffer('cols', (nb * L, Q), x.dtype)
            for a, z in cache_parts(nb, L * Q):                          # each part's patches multiplied while in cache
                part = colst[a * L:z * L]
                im2col_nhwc(xt[n0 + a:n0 + z], kh, kw, sh, sw, part)
                yt = np.matmul(part, wt, out=self.buffer('y', ((z - a) * L, K), x.dtype))
                nhwc_to_nchw(yt, b, out[n0 + a:n0 + z].reshape(z - a, K, L))
        return xt, wt

    def channels_last_backward(self, dout, xt, w, dw, input_grad):   # as `backward`; xt from `channels_last_forward`
        """The channels-last path's backward step: accumulate dE/dw = G X_col^T (its columns in the patches' order (r, s, c)),
        return dE/dx from dE/dX_col^T = G^T W, added back onto each padded image and cropped by `col2im_nhwc`"""
        s = self.saved
        (N, C, H, W), (sh, sw), (ph, pw) = s['x_shape'], s['stride'], s['padding']
        K, _, kh, kw = w.shape
        OH, OW = dout.shape[2:]
        L, Q, chunk = OH * OW, C * kh * kw, s['chunk']
        gt = self.buffer('g', (N * L, K), xt.dtype)
        nchw_to_nhwc(dout, 0, 0, gt.reshape(N, OH, OW, K))               # G^T, one row per output position
        w2 = s['wt'].T                                                    # W, columns (r, s, c): forward's W^T
        dw2 = np.zeros((K, Q), xt.dtype)
        dx = np.empty(s['x_shape'], xt.dtype) if input_grad else None
        for n0 in range(0, N, chunk):
            nb = min(chunk, N - n0)
            colst = self.buffer('cols', (nb * L, Q), xt.dtype)
            if not s['cols_valid']: im2col_nhwc(xt[n0:n0 + nb], kh, kw, sh, sw, colst)
            g = gt[n0 * L:(n0 + nb) * L]
            dw2 += np.matmul(colst.T, g, out=self.buffer('dwt', (Q, K), xt.dtype)).T   # dE/dW, columns (r, s, c):
                                                                          # as (X_col G^T)^T, 1.15-1.35x BLAS's speed
            if input_grad: self.add_patch_gradients(g, w2, (kh, kw), L, dx[n0:n0 + nb])
        dw += dw2.reshape(K, kh, kw, C).transpose(0, 3, 1, 2)
        return dx

    def im2col_backward(self, dout, x, w, dw, padding, input_grad):   # as `backward`; x unpadded, padding (ph, pw)
        "The im2col path's backward step: accumulate dE/dw, return dE/dx (col2im pads and crops each plane in cache)"
        s, (ph, pw) = self.saved, padding
        (N, C), (sh, sw) = x.shape[:2], s['stride']
        K, _, kh, kw = w.shape
        L, chunk, w2, dw2 = dout.shape[2] * dout.shape[3], s['chunk'], w.reshape(K, -1), dw.reshape(K, -1)
        dx = np.empty(x.shape, x.dtype) if input_grad else None
        for n0 in range(0, N, chunk):
            nb = min(chunk, N - n0)
            cols = self.buffer('cols', (C * kh * kw, nb * L), x.dtype)
            if not s['cols_valid']: im2col(x[n0:n0 + nb], kh, kw, sh, sw, ph, pw, cols)
            g = self.buffer('g', (K, nb * L), x.dtype)
            nchw_to_gemm(dout[n0:n0 + nb].reshape(nb, K, L), g)
            if K * C * kh * kw <= config.SPLIT_K_MAX_WEIGHTS:                               # dE/dW = G X_col^T
                parts = self.buffer('parts', (config.SPLIT_K_PIECES, K, C * kh * kw), x.dtype)   # small: in Numba
                matmul_nt_split(g, cols, parts)
                dw2 += parts.sum(0)
            else: self.add_filter_gradient(dw2, g, cols)                                    # large: BLAS
            if not input_grad: continue
            dcols = np.matmul(w2.T, g, out=self.buffer('dcols', cols.shape, x.dtype))       # dE/dX_col = W^T G
            col2im(dcols, kh, kw, sh, sw, ph, pw, dx[n0:n0 + nb])
        return dx
