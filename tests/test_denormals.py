"""Denormal (subnormal) numbers, an edge case the invalid-input battery and the other files do not reach: the smallest
floats, which some hardware flushes to zero and fast-math code may mishandle. Every activation, the softmax and the
cross-entropy, a convolution (both kernel families) and the poolings must take them without a warning, give finite
results equal to the float64 reference, and keep the sign and the ordering the maths implies.
"""
import warnings

import numpy as np
import pytest

import dlcourse.engine.conv as engine
from dlcourse.activations import (elu, elu_grad, leaky_relu, relu, relu_grad, sigmoid, sigmoid_grad, softplus, tanh,
                                  tanh_grad)
from dlcourse.conv import conv2d, conv2d_backward
from dlcourse.losses import CrossEntropyLoss, cross_entropy, log_softmax, softmax
from dlcourse.pool import avg_pool2d, max_pool2d

DTYPES = [np.float32, np.float64]


def tiny_values(dtype):
    "The smallest subnormal, a few subnormals of both signs, the largest subnormal, and 0"
    info = np.finfo(dtype)
    s, t = info.smallest_subnormal, info.tiny            # tiny: the smallest normal number
    return np.array([s, -s, 3 * s, -7 * s, t / 2, -t / 4, np.nextafter(t, 0), 0.0], dtype)


@pytest.fixture(autouse=True)
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter('error')                   # overflow/underflow/invalid warnings fail the test
        yield


@pytest.mark.parametrize('dtype', DTYPES)
def test_activations_of_denormals(dtype):
    x = tiny_values(dtype)
    assert (x[:-1] != 0).all(), 'the inputs must really be subnormal, not flushed to zero'
    np.testing.assert_array_equal(sigmoid(x), np.full_like(x, 0.5))      # 1 / (1 + e^-x) rounds to 1/2
    np.testing.assert_array_equal(sigmoid_grad(x), np.full_like(x, 0.25))
    np.testing.assert_array_equal(tanh(x), x)                             # tanh(x) = x - x^3/3 + ...: exactly x
    np.testing.assert_array_equal(tanh_grad(x), np.ones_like(x))
    np.testing.assert_array_equal(relu(x), np.where(x > 0, x, 0))         # the sign decides, not the size
    np.testing.assert_array_equal(relu_grad(x), (x > 0).astype(dtype))
    np.testing.assert_array_equal(leaky_relu(x, 0.5), np.where(x > 0, x, x * dtype(0.5)))
    np.testing.assert_allclose(elu(x), x, rtol=1e-6, atol=0)              # e^x - 1 = x for tiny x (expm1)
    np.testing.assert_array_equal(elu_grad(x), np.ones_like(x))
    np.testing.assert_allclose(softplus(x), np.full_like(x, np.log(2)), rtol=1e-6)
    for f in (sigmoid, tanh, relu, elu, softplus):
        assert f(x).dtype == dtype, f.__name__


@pytest.mark.parametrize('dtype', DTYPES)
def test_softmax_and_cross_entropy_of_denormal_logits(dtype):
    z = np.stack([tiny_values(dtype), tiny_values(dtype)[::-1]])          # (2, 8) logits within a hair of each other
    p = softmax(z)
    np.testing.assert_allclose(p, np.full_like(z, 1 / 8), rtol=1e-6)      # all but equal logits: uniform
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(log_softmax(z), np.full_like(z, -np.log(8)), rtol=1e-6)
    t = np.array([0, 3])
    np.testing.assert_allclose(cross_entropy(z, t), np.log(8), rtol=1e-6)
    loss = CrossEntropyLoss()
    loss(z, t)
    g = loss.backward()
    want = np.full_like(z, 1 / 8); want[[0, 1], t] -= 1
    np.testing.assert_allclose(g, want / 2, rtol=1e-5, atol=1e-7)
    assert np.isfinite(g).all() and g.dtype == dtype


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('direct', [True, False], ids=['direct', 'im2col'])
def test_convolution_of_denormals(dtype, direct, monkeypatch):
    "Images of subnormal pixels times ordinary weights: the products stay subnormal and must not be flushed to zero"
    monkeypatch.setattr(engine, 'use_direct', lambda *a: direct)
    rng = np.random.default_rng(0)
    s = np.finfo(dtype).smallest_subnormal
    x = (rng.integers(-50, 50, size=(2, 3, 7, 6)) * s).astype(dtype)     # subnormal pixels (integer multiples of s)
    w = rng.integers(-3, 4, size=(4, 3, 3, 3)).astype(dtype)              # small integer weights: exact products
    y = conv2d(x, w, stride=1 if direct else 2, padding=1)
    xr, wr = (x / s).astype(np.float64), w.astype(np.float64)            # the same in units of s, exactly
    want = conv2d(xr, wr, stride=1 if direct else 2, padding=1) * s
    np.testing.assert_array_equal(y, want.astype(dtype))                 # sums of multiples of s are exact
    assert (y != 0).any()
    dx, dw, db = conv2d_backward(np.ones_like(y), x, w, stride=1 if direct else 2, padding=1)
    dx_want = conv2d_backward(np.ones(y.shape), xr, wr, stride=1 if direct else 2, padding=1)[0]
    np.testing.assert_array_equal(dx, dx_want.astype(dtype))             # the gradient wrt x does not involve s
    assert np.isfinite(dw).all() and np.isfinite(db).all()


@pytest.mark.parametrize('dtype', DTYPES)
def test_pooling_of_denormals(dtype):
    x = np.resize(tiny_values(dtype), (1, 2, 4, 4)).astype(dtype)
    m = max_pool2d(x, 2)
    np.testing.assert_array_equal(m, x.reshape(1, 2, 2, 2, 2, 2).max((3, 5)))
    a = avg_pool2d(x, 2)
    np.testing.assert_allclose(a, x.astype(np.float64).reshape(1, 2, 2, 2, 2, 2).mean((3, 5)),
                               rtol=0, atol=float(np.finfo(dtype).smallest_subnormal))
