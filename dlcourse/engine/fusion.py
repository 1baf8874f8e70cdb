"""Fusion below the layer API. A `Sequential` asks each layer whether it can run together with the layers after it
(`Module.fuse`); a stride-1 convolution followed by an activation and 2x2 pooling answers with a `ConvActPool` step,
which computes all three in one pass of the fused kernel and their backward step in one more. Batch normalisation
followed by a ReLU answers with a `BatchNormReLU` step, which ResNet's residual block also uses for the sum at its end,
relu(bn(x) + shortcut): the batch-norm kernel adds and activates while it normalises. The network and its
layers stay what the user built: same parameters, same results, same checks; only the way they are computed changes.

`fusion(False)` turns it off (to compare, or to look at each layer's own computation).

One difference, at NaN only: where a max-pooling window holds several NaN, the layers one by one give a NaN input
gradient at each of them (pooling passes 0 to all but one, and the activation's 0 * act'(NaN) is NaN), the fused step
only at the one its maximum came from. The output is NaN in both."""
from contextlib import contextmanager

import numpy as np

from ..core import Module, check_backward, check_grad, check_parameter
from ..kernels.act import RELU
from ..kernels.fused import conv_act_pool_forward, pool_act_backward_wide
from .conv import ConvEngine, check_conv, use_direct

_enabled = True


@contextmanager
def fusion(enabled):  # False: every layer computes on its own, True: layers fuse where they can (the default)
    "Within this context, networks fuse their layers (or not)"
    global _enabled
    before, _enabled = _enabled, bool(enabled)
    try: yield
    finally: _enabled = before


def _plain(*modules):
    "No forward hooks on any of `modules` (a hook wants to see each one's own output)"
    return not any(m._forward_hooks for m in modules)


def conv_act_pool(conv,        # a Conv2d
                  following):  # the modules after it in a Sequential
    "`Conv2d.fuse`: (a ConvActPool step, 2) for a fusable convolution, activation and pooling, else (conv, 0)"
    if not _enabled or len(following) < 2: return conv, 0
    act, pool = following[0], following[1]
    fusable_act = (callable(getattr(act, 'kernel_args', None)) and getattr(act, 'monotonic', False)   # an Elementwise
                   and getattr(act, 'grad_from_output', False))                                    # layer
    w = getattr(conv.weight, 'data', None)      # the decision reads the filters' shape, not attributes a user may have set:
    if not (isinstance(w, np.ndarray) and w.ndim == 4):   # anything odd is left to Conv2d.forward's checks and messages
        return conv, 0
    if not (fusable_act and getattr(pool, 'fused_pool', None)
            and conv.stride == (1, 1) and use_direct(w.shape[1], w.shape[0], w.shape[2], w.shape[3])
            and _plain(conv, act, pool)):
        return conv, 0
    cached = conv.__dict__.get('_fused')
    if cached is None or cached._layers[1:] != (act, pool): conv._fused = cached = ConvActPool(conv, act, pool)
    return cached, 2


class ConvActPool(Module):
    """pool(act(conv(x))) for a stride-1 convolution with few weights, an activation that does not decrease (its derivative
    written with its output) and 2x2 pooling with stride 2: one fused kernel forward, one backward. Runs the three layers
    one by one when the convolution's output is too small to pool"""
    def __init__(self, conv, act, pool):
        super().__init__()
        self._layers, self._engine, self._out, self._unfused = (conv, act, pool), ConvEngine(), None, False

    def forward(self, x):
        conv, act, pool = self._layers
        x, w, b = conv.check_input(x)                                         # the checks of Conv2d.forward ...
        x, w, b, _, padding, (OH, OW) = check_conv(x, w, b, conv.stride, conv.padding)
        code, param = act.kernel_args(x.dtype)                                # ... and of the activation's
        self._unfused = OH < 2 or OW < 2
        if self._unfused: return pool(act(conv(x)))                          # the layers raise what they raise
        N, K, e, avg = len(x), w.shape[0], self._engine, pool.fused_pool == 'avg'
        xp = e.pad(x, *padding)
        out = np.empty((N, K, OH // 2, OW // 2), x.dtype)
        idx = None if avg else e.buffer('idx', out.shape, np.uint8)       # the kernel pools as the one given says
        amap = e.buffer('amap', (N, K, OH, OW), x.dtype) if avg else None
        conv_act_pool_forward(xp, w, np.zeros(K, x.dtype) if b is None else b, code, param, out, idx, amap)
        conv.floored, pool.floored = conv.floors(x.shape), bool(OH % 2 or OW % 2)
        for m in (conv, act, pool): m._out = None                              # their own backward has nothing to use
        self._saved, self._out = (x.shape, xp, w, padding, idx, amap, code, param), out
        return out

    def backward(self, dout, input_grad=True):   # input_grad=False: no dE/dx (backward_params)
        conv, act, pool = self._layers
        if self._unfused: return conv.backward(act.backward(pool.backward(dout)), input_grad)
        dout = check_backward(self, dout, self._out)
        x_shape, xp, w, padding, idx, amap, code, param = self._saved
        check_parameter(conv, 'weight', w.shape, w.dtype)                     # still Parameters, as Conv2d.backward checks
        check_parameter(conv, 'bias', w.shape[:1], w.dtype, optional=True)
        dw = check_grad(conv.weight.grad, 'weight.grad', w)                  # both gradients, before either is written
        db = None if conv.bias is None else check_grad(conv.bias.grad, 'bias.grad', w[:, 0, 0, 0])
        (N, K), e, Wp = dout.shape[:2], self._engine, xp.shape[3]
        OH, OW = xp.shape[2] - w.shape[2] + 1, Wp - w.shape[3] + 1
        gw, dbn = e.buffer('gw', (N, K, (OH - 1) * Wp + OW), xp.dtype), e.buffer('dbn', (N, K), xp.dtype)
        pool_act_backward_wide(dout, self._out, idx, amap, code, param, Wp, gw, dbn)
        if db is not None: db += dbn.sum(0)
        return e.direct_backward(gw, xp, w, dw, padding, x_shape, input_grad)

    def backward_params(self, dout): self.backward(dout, input_grad=False)

    def extra_repr(self): return ' -> '.join(type(m).__name__ for m in self._layers)


def bn_relu(bn,          # a BatchNorm2d
            following):  # the modules after it (in a Sequential, or the block that holds it)
    "`BatchNorm2d.fuse`: (a BatchNormReLU step, 1) for batch normalisation followed by a ReLU, else (bn, 0)"
    if not _enabled or len(following) < 1: return bn, 0
    act = following[0]
    if not (callable(getattr(act, 'kernel_args', None)) and getattr(act, 'code', None) == RELU and _plain(bn, act)):
        return bn, 0
    cached = bn.__dict__.get('_fused')
    if cached is None or cached._layers[1] is not act: bn._fused = cached = BatchNormReLU(bn, act)
    return cached, 1


class BatchNormReLU(Module):
    """relu(bn(x)), or relu(bn(x) + residual) as a residual block ends, for a BatchNorm2d and a ReLU: the normalising pass
    adds and activates (`BatchNorm2d.forward_relu`), so the sum and the activation cost no pass over memory. Backward, the
    two layers' own steps (ReLU's derivative needs only the output, which the ReLU keeps): inside batch normalisation's
    backward kernel the derivative made it no faster"""
    def __init__(self, bn, act):
        super().__init__()
        self._layers, self._out = (bn, act), None

    def forward(self, x, residual=None):
        bn, act = self._layers
        self._out = bn.forward_relu(x, act, residual)
        return self._out

    def backward(self, dout):
        bn, act = self._layers
        return bn.backward(act.backward(dout))

    def extra_repr(self): return ' -> '.join(type(m).__name__ for m in self._layers)
