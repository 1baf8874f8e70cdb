"""Batch normalisation for BatchNorm2d (lesson 08): the batch's statistics, the normalisation and its backward step as
kernels (kernels.norm), each one pass over the data per channel instead of the several passes and temporaries of the
lesson's NumPy functions `batch_norm` and `batch_norm_backward`, which the tests hold them to. A ReLU after the layer,
and a residual added before it, can go into the normalising pass (`engine.fusion.BatchNormReLU`). The arrays arrive checked
by the layer: x and dout C-contiguous (N, C, H, W), the per-channel arrays (C,) of x's dtype.

Local response normalisation for LocalResponseNorm (lesson 08) the same way: one pass forward, two backward, instead of
the NumPy functions `lrn` and `lrn_backward` of the lesson (a pass and a temporary for every operation, and `**` for the
power), which the tests hold them to."""
import numpy as np

from ..kernels import norm


def _nc(x): return x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3])   # (N, C, H*W): a view (x is C-contiguous)


def batch_statistics(x):  # (N, C, H, W)
    "The mean and the biased variance of each channel over the batch and the positions, (C,) each in x's dtype"
    mean, var = np.empty(x.shape[1]), np.empty(x.shape[1])
    norm.batch_stats(_nc(x), mean, var)
    return mean.astype(x.dtype), var.astype(x.dtype)


def normalize(x, mean, inv_std, weight, bias,
              residual=None,   # an array of x's shape and dtype to add (C-contiguous), or None
              relu=False):     # apply ReLU to the result?
    "(x - mean) · inv_std · weight + bias per channel: BatchNorm2d's output (N, C, H, W); relu(that + residual) in one pass"
    out = np.empty_like(x)
    add = residual is not None
    norm.batch_norm_forward(_nc(x), mean, inv_std, weight, bias, _nc(residual if add else x), add, bool(relu), _nc(out))
    return out


def normalize_backward(dout, x, mean, inv_std, weight, weight_grad, bias_grad, batch_stats):
    "dE/dx of BatchNorm2d; adds the weight's and the bias's gradients to weight_grad and bias_grad"
    dx = np.empty_like(x)
    norm.batch_norm_backward(_nc(dout), _nc(x), mean, inv_std, weight, weight_grad, bias_grad, bool(batch_stats), _nc(dx))
    return dx


def _lrn_window(size, C):
    """The window's channel offsets lo ... hi: c - n//2 ... c + (n-1)//2, as PyTorch's, clipped to ±(C - 1), beyond
    which there is no channel to reach (and a size of 10**30 would not fit the kernels' int64)"""
    return max(-(size // 2), 1 - C), min((size - 1) // 2, C - 1)


def local_response_norm(x, size, alpha, beta, k):  # x: (N, C, H, W); the hyper-parameters checked by the layer
    "LocalResponseNorm's output x / s^β with s = k + α/n Σ x² over the window, and (s, s^-β) for the backward step"
    s, r, out = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    lo, hi = _lrn_window(size, x.shape[1])
    t = x.dtype.type
    norm.lrn_forward(_nc(x), lo, hi, t(k), t(alpha / size), t(beta), _nc(s), _nc(r), _nc(out))
    return out, s, r


def local_response_norm_backward(dout, x, out, s, r, size, alpha, beta):
    "dE/dx of LocalResponseNorm from dE/d(output), with the forward step's input, output, s and s^-β"
    dx, scratch = np.empty_like(x), np.empty_like(x)
    lo, hi = _lrn_window(size, x.shape[1])
    norm.lrn_backward(_nc(dout), _nc(x), _nc(out), lo, hi, x.dtype.type(2 * alpha * beta / size), _nc(s), _nc(r),
                      _nc(scratch), _nc(dx))
    return dx
