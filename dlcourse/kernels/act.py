"""Activation functions in the kernels: one scalar definition of each activation and of its derivative, used by the
activation layers and by the fused layers alike, and the elementwise kernels over whole arrays. The layers call
`apply_act` and `apply_grad`, which run small arrays on the calling thread with the span kernels: a network whose
activation layers are all small (LeNet-5) never compiles the parallel kernels, a second or two of its cold start.

kernels.fused compiles `activate` and `activate_grad` into its own kernels, which Numba caches by the contents of
fused.py alone: a change here needs a change there (its docstring says so), or the fused layers load stale kernels."""
import math

import numpy as np
from numba import types
from numba.extending import overload

from .config import SERIAL_VALUES
from .jit import jit, prange

# activation codes (dlcourse.activations.ACTIVATIONS maps the course's activation layers to them)
IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, ELU, SOFTPLUS = CODES = range(7)


@jit()
def tanh_f32(v):  # a float32 number
    """tanh(v) as a rational function (Eigen's float approximation, |error| <= 5 ulp): a dozen multiply-adds and one division
    instead of a call into the maths library; saturates to +-1 beyond |v| = 9, NaN stays NaN"""
    f = np.float32
    c = f(7.90531110763549805)
    x = c if v > c else v                                       # written so that NaN passes both comparisons
    x = -c if x < -c else x
    x2 = x * x
    p = x2 * f(-2.76076847742355e-16) + f(2.00018790482477e-13)
    p = x2 * p + f(-8.60467152213735e-11)
    p = x2 * p + f(5.12229709037114e-08)
    p = x2 * p + f(1.48572235717979e-05)
    p = x2 * p + f(6.37261928875436e-04)
    p = x2 * p + f(4.89352455891786e-03)
    q = x2 * f(1.19825839466702e-06) + f(1.18534705686654e-04)
    q = x2 * q + f(2.26843463243900e-03)
    q = x2 * q + f(4.89352518554385e-03)
    r = x * p / q
    r = v if abs(v) < f(0.0004) else r                          # tanh(v) = v to float32 precision
    r = f(1) if v > f(9) else r
    return f(-1) if v < f(-9) else r


def is_float32(v):  # a number
    "Is `v` a float32? Answered when a kernel is compiled (a constant in the machine code), so it costs nothing"
    return isinstance(v, np.float32)


@overload(is_float32)
def _is_float32(v):
    answer = isinstance(v, types.Float) and v.bitwidth == 32
    return lambda v: answer


@jit(inline=True)
def _sigmoid(v, param, one): return one / (one + math.exp(-v))

@jit(inline=True)
def _tanh(v, param, one): return tanh_f32(v) if is_float32(v) else math.tanh(v)

@jit(inline=True)
def _relu(v, param, one): return one - one if v <= one - one else v            # NaN <= 0 is false: NaN stays NaN

@jit(inline=True)
def _leaky_relu(v, param, one): return v if v > one - one else v * param

@jit(inline=True)
def _elu(v, param, one): return v if v > one - one else param * math.expm1(v)

@jit(inline=True)
def _softplus(v, param, one): return max(v, one - one) + math.log1p(math.exp(-abs(v)))


@jit(inline=True)
def activate(v,      # a number
             act,    # activation code
             param,  # the activation's parameter in v's dtype (leaky ReLU's slope, ELU's alpha; else unused)
             one):   # 1 in v's dtype (float32 arithmetic stays float32)
    """act(v), as lesson 04's NumPy functions define it, also at -inf, inf and NaN (NaN stays NaN; ReLU of -inf is 0, as
    max(-inf, 0)); tanh of a float32 is `tanh_f32`. Each activation is one small function above (`_sigmoid`, `_tanh`,
    ...), so that a loop over one activation compiles only its own"""
    if act == SIGMOID: return _sigmoid(v, param, one)
    if act == TANH: return _tanh(v, param, one)
    if act == RELU: return _relu(v, param, one)
    if act == LEAKY_RELU: return _leaky_relu(v, param, one)
    if act == ELU: return _elu(v, param, one)
    if act == SOFTPLUS: return _softplus(v, param, one)
    return v


@jit(inline=True)
def _sigmoid_grad(z, y, param, one): return y * (one - y)

@jit(inline=True)
def _tanh_grad(z, y, param, one): return one - y * y

@jit(inline=True)
def _relu_grad(z, y, param, one): return one if y > one - one else one - one

@jit(inline=True)
def _leaky_relu_grad(z, y, param, one): return one if z > one - one else param

@jit(inline=True)
def _elu_grad(z, y, param, one): return one if z > one - one else y + param

@jit(inline=True)
def _softplus_grad(z, y, param, one): return -math.expm1(-y)


@jit(inline=True)
def activate_grad(z,      # the activation's input (the fused layers, which keep only y, pass y: see below)
                  y,      # its output y = act(z)
                  act,    # activation code
                  param,  # as in `activate`
                  one):   # 1 in y's dtype
    """d act/dz at z: y(1 - y) (sigmoid), 1 - y² (tanh), [y > 0] (ReLU), 1 or α (leaky ReLU), 1 or y + α (ELU),
    1 - exp(-y) (softplus: σ(z) = 1 - exp(-y)), 1 (identity); one small function each, as in `activate`. Leaky ReLU and
    ELU choose their branch by z > 0: with a negative α, y > 0 where z < 0. For α >= 0 (the only case the fused layers
    compute), y > 0 exactly where z > 0, so passing y for z gives the same derivative"""
    if act == SIGMOID: return _sigmoid_grad(z, y, param, one)
    if act == TANH: return _tanh_grad(z, y, param, one)
    if act == RELU: return _relu_grad(z, y, param, one)
    if act == LEAKY_RELU: return _leaky_relu_grad(z, y, param, one)
    if act == ELU: return _elu_grad(z, y, param, one)
    if act == SOFTPLUS: return _softplus_grad(z, y, param, one)
    return one


CHUNK = 4096   # values per task of the parallel elementwise kernels (16 KB of float32: a task's work stays in L1)


@jit()
def act_span(x, out, act, param):
    """out = act(x) for two flat arrays of one length (out may be x). The activation is chosen once, outside the loop: each
    loop below calls one activation's own function, so that the loop holds only its code and vectorises, and compiling
    it types one activation, not all of them (a third of this kernel's compile time). (The callers pass slices: a loop over
    range(lo, hi) would not vectorise, since Numba must allow for negative indices there.)"""
    one = x.dtype.type(1)
    if act == SIGMOID:
        for i in range(x.shape[0]): out[i] = _sigmoid(x[i], param, one)
    elif act == TANH:
        for i in range(x.shape[0]): out[i] = _tanh(x[i], param, one)
    elif act == RELU:
        for i in range(x.shape[0]): out[i] = _relu(x[i], param, one)
    elif act == LEAKY_RELU:
        for i in range(x.shape[0]): out[i] = _leaky_relu(x[i], param, one)
    elif act == ELU:
        for i in range(x.shape[0]): out[i] = _elu(x[i], param, one)
    elif act == SOFTPLUS:
        for i in range(x.shape[0]): out[i] = _softplus(x[i], param, one)
    else:                                    # the identity: `activate` returns v for every other code
        for i in range(x.shape[0]): out[i] = x[i]


@jit(parallel=True)
def act_forward(x,      # input, flat (n,)
                act,    # activation code
                param,  # the activation's parameter, in x's dtype
                out):   # out: act(x), flat (n,); may be x itself
    """out = act(x) elementwise. Parallel over chunks of CHUNK values (`apply_act` runs small arrays on one thread
    instead); the inner loop runs over contiguous memory."""
    n = x.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = c * CHUNK, min(n, (c + 1) * CHUNK)
        act_span(x[lo:hi], out[lo:hi], act, param)


@jit()
def grad_span(dout, z, y, act, param, dx):
    "dx = dout * act'(z) for flat arrays of one length (dx may be dout); the activation chosen outside the loop, as in `act_span`"
    one = y.dtype.type(1)
    if act == SIGMOID:
        for i in range(y.shape[0]): dx[i] = dout[i] * _sigmoid_grad(z[i], y[i], param, one)
    elif act == TANH:
        for i in range(y.shape[0]): dx[i] = dout[i] * _tanh_grad(z[i], y[i], param, one)
    elif act == RELU:
        for i in range(y.shape[0]): dx[i] = dout[i] * _relu_grad(z[i], y[i], param, one)
    elif act == LEAKY_RELU:
        for i in range(y.shape[0]): dx[i] = dout[i] * _leaky_relu_grad(z[i], y[i], param, one)
    elif act == ELU:
        for i in range(y.shape[0]): dx[i] = dout[i] * _elu_grad(z[i], y[i], param, one)
    elif act == SOFTPLUS:
        for i in range(y.shape[0]): dx[i] = dout[i] * _softplus_grad(z[i], y[i], param, one)
    else:                                    # the identity, whose derivative is 1 (`activate_grad`'s other codes)
        for i in range(y.shape[0]): dx[i] = dout[i]


def apply_act(x, act, param, out):
    """out = act(x) (flat arrays, as `act_forward`): small arrays go straight to `act_span` on the calling thread, so a
    network whose activations are all small never compiles the parallel kernel (a cold start compiles only what it
    runs)"""
    if x.shape[0] < SERIAL_VALUES: act_span(x, out, act, param)
    else: act_forward(x, act, param, out)


def apply_grad(dout, z, y, act, param, dx):
    "dx = dout * act'(z) (flat arrays, as `act_backward`), small arrays straight to `grad_span`, as `apply_act`"
    if y.shape[0] < SERIAL_VALUES: grad_span(dout, z, y, act, param, dx)
    else: act_backward(dout, z, y, act, param, dx)


@jit(parallel=True)
def act_backward(dout,   # dE/dy, flat (n,)
                 z,      # the forward input, flat (n,)
                 y,      # the forward output act(z), flat (n,)
                 act,    # activation code
                 param,  # as in `act_forward`
                 dx):    # out: dE/dz = dout * act'(z), flat (n,); may be dout itself
    "dx = dout * act'(z). Parallel over chunks as `act_forward` (`apply_grad` runs small arrays on one thread)"
    n = y.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = c * CHUNK, min(n, (c + 1) * CHUNK)
        grad_span(dout[lo:hi], z[lo:hi], y[lo:hi], act, param, dx[lo:hi])
