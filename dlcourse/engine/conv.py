"""The convolution engine: argument checks, reusable buffers, the choice among five algorithms, and the one forward and
backward step of a convolution, used by `Conv2d`, `conv2d` and the fused layers alike.

Algorithms, chosen from the shapes alone (no API change): a *dense* layer (the filter covers the whole padded input: one
matrix product per batch), a *pointwise* layer (1x1 filters, no padding, any stride: one matrix product per image on the
input as it is, no patch matrix), the *direct* kernels (stride 1 and few weights, LeNet-5's layers: convolve on wide rows,
no patch matrix), and *im2col* (any stride: a patch matrix and one BLAS product, per image for layers with many
output positions)."""
import numpy as np

from ..core import as_pair, check_allocation, check_array, check_grad
from ..kernels import config
from ..kernels.conv import (col2im, conv_direct_backward_input, conv_direct_backward_weight, conv_direct_forward,
                            gemm_to_nchw, im2col, matmul_nt_split, nchw_to_gemm, to_wide_rows)
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

    def pad(self, x, ph, pw):
        "x with ph rows and pw columns of zeros around every plane (x itself when there is no padding)"
        if ph == pw == 0: return x
        N, C, H, W = x.shape
        xp = self.buffer('xp', (N, C, H + 2 * ph, W + 2 * pw), x.dtype)
        xp[:, :, :ph] = 0; xp[:, :, ph + H:] = 0; xp[:, :, :, :pw] = 0; xp[:, :, :, pw + W:] = 0
        xp[:, :, ph:ph + H, pw:pw + W] = x
        return xp

    def forward(self, x, w, b, stride, padding):  # as `check_conv`, which validates them
        "y = conv(x, w) + b: (N, C, H, W) -> (N, K, OH, OW)"
        x, w, b, (sh, sw), (ph, pw), (OH, OW) = check_conv(x, w, b, stride, padding)
        (N, C, H, W), (K, _, kh, kw) = x.shape, w.shape
        xp = self.pad(x, ph, pw)
        out = np.empty((N, K, OH, OW), x.dtype)
        direct, L = (sh, sw) == (1, 1) and use_direct(C, K, kh, kw), OH * OW
        chunk = max(1, config.PATCH_BUDGET // (C * kh * kw * L))        # images per patch matrix
        dense = xp.shape[2] == kh and xp.shape[3] == kw                   # the filter covers the padded input
        pointwise = use_pointwise(kh, kw, ph, pw) and not dense           # 1x1 filters: a matrix product per image
        if pointwise:                                                     # Y_n = W X_n, X_n (C, L): no patch matrix
            if (sh, sw) != (1, 1):                                        # stride: every sh-th row, sw-th column
                xp = self.buffer('xs', (N, C, OH, OW), x.dtype)
                xp[...] = x[:, :, ::sh, ::sw]
            y = out.reshape(N, K, L)
            np.matmul(w.reshape(K, C), xp.reshape(N, C, L), out=y)
            if b is not None: y += b[:, None]
        elif dense:                                                       # Y = X W^T: each image is its own patch
            y = matmul_nt(xp.reshape(N, C * kh * kw), w.reshape(K, C * kh * kw), out.reshape(N, K))
            if b is not None: y += b
        else:
            b = np.zeros(K, x.dtype) if b is None else b                  # the kernels below add a bias
            if direct: conv_direct_forward(xp, w, b, out)
            else:
                w2, per_image = w.reshape(K, C * kh * kw), L >= config.GEMM_PER_IMAGE
                if per_image: w2 = np.concatenate((w2, b[:, None]), axis=1)       # the bias as one more weight...
                for n0 in range(0, N, chunk):
                    xs = xp[n0:n0 + chunk]
                    cols = self.buffer('cols', (C * kh * kw + int(per_image), len(xs) * L), x.dtype)
                    im2col(xs, kh, kw, sh, sw, cols[:C * kh * kw])
                    if per_image:                                             # ...times a row of ones
                        cols[-1] = 1
                        for j in range(len(xs)):                              # one GEMM per image, into its output
                            np.matmul(w2, cols[:, j * L:(j + 1) * L], out=out[n0 + j].reshape(K, L))
                    else:
                        y = np.matmul(w2, cols, out=self.buffer('y', (K, len(xs) * L), x.dtype))   # the GEMM
                        gemm_to_nchw(y, b, out[n0:n0 + chunk].reshape(len(xs), K, L))
        self.saved = dict(x_shape=x.shape, xp=xp, w=w, stride=(sh, sw), padding=(ph, pw), direct=direct, dense=dense,
                          pointwise=pointwise, chunk=chunk, out_shape=out.shape,
                          cols_valid=chunk >= N)                          # backward may reuse the patch matrix
        return out

    def direct_backward(self, gw,  # dE/dy on wide rows (N, K, M), from `to_wide_rows` or the fused pooling backward
                        xp,        # the padded input of the forward step
                        w,         # the filters
                        dw,        # filter gradient (K, C, kh, kw) to accumulate into
                        dxp):      # out: dE/d(padded input), or None to skip it
        "The direct kernels' backward step (stride 1): accumulate dE/dw, write dE/dxp"
        N, K = gw.shape[:2]
        parts = self.buffer('parts', (max(1, min(N, config.DIRECT_BATCH_SLICES)),) + w.shape, xp.dtype)
        conv_direct_backward_weight(gw, xp, parts)
        dw += parts.sum(0)
        if dxp is not None: conv_direct_backward_input(gw, w, dxp)

    def crop(self, dxp, x_shape, padding):
        "dE/dx from dE/d(padded x): the padding's rows and columns dropped"
        (ph, pw), (H, W) = padding, x_shape[2:]
        return dxp[:, :, ph:ph + H, pw:pw + W].copy() if ph or pw else dxp

    def input_grad_buffer(self, xp, padding):
        "Where dE/d(padded x) goes: a reusable buffer when it is cropped afterwards, else a fresh array (it is returned)"
        return self.buffer('dxp', xp.shape, xp.dtype) if any(padding) else np.empty(xp.shape, xp.dtype)

    def backward(self, dout,   # dE/dy (N, K, OH, OW), validated
                 dw,           # filter gradient (K, C, kh, kw) to accumulate into
                 db):          # bias gradient (K,) to accumulate into, or None
        "Accumulate dE/dw and dE/db, return dE/dx"
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
            dw.reshape(K, C)[...] += np.matmul(g, x3.transpose(0, 2, 1)).sum(0)
            dxs = np.matmul(w2.T, g).reshape(xp.shape)
            if (sh, sw) == (1, 1): return dxs
            dx = np.zeros(s['x_shape'], xp.dtype)
            dx[:, :, ::sh, ::sw] = dxs
            return dx
        dxp = self.input_grad_buffer(xp, padding)
        if s['dense']:                                                    # dE/dW += G^T X, dE/dX = G W
            g, x2, w2 = dout.reshape(N, K), xp.reshape(N, C * kh * kw), w.reshape(K, C * kh * kw)
            matmul_tn(g, x2, dw.reshape(K, -1), accumulate=True)
            matmul_nn(g, w2, dxp.reshape(N, C * kh * kw))                 # (N may be 0)
        elif s['direct']:
            gw = self.buffer('gw', (N, K, (dout.shape[2] - 1) * xp.shape[3] + dout.shape[3]), xp.dtype)
            to_wide_rows(dout, xp.shape[3], gw)
            self.direct_backward(gw, xp, w, dw, dxp)
        else:
            L, chunk, w2, dw2 = dout.shape[2] * dout.shape[3], s['chunk'], w.reshape(K, -1), dw.reshape(K, -1)
            for n0 in range(0, N, chunk):
                nb = min(chunk, N - n0)
                cols = self.buffer('cols', (C * kh * kw, nb * L), xp.dtype)
                if not s['cols_valid']: im2col(xp[n0:n0 + nb], kh, kw, sh, sw, cols)
                g = self.buffer('g', (K, nb * L), xp.dtype)
                nchw_to_gemm(dout[n0:n0 + nb].reshape(nb, K, L), g)
                if K * C * kh * kw <= config.SPLIT_K_MAX_WEIGHTS:                               # dE/dW = G X_col^T
                    parts = self.buffer('parts', (config.SPLIT_K_PIECES, K, C * kh * kw), xp.dtype)   # small: in Numba
                    matmul_nt_split(g, cols, parts)
                    dw2 += parts.sum(0)
                else: dw2 += g @ cols.T                                                          # large: BLAS
                dcols = np.matmul(w2.T, g, out=self.buffer('dcols', cols.shape, xp.dtype))      # dE/dX_col = W^T G
                col2im(dcols, kh, kw, sh, sw, dxp[n0:n0 + nb])
        return self.crop(dxp, s['x_shape'], padding)
