"""Lesson 04's activations against PyTorch (values, derivatives, layer gradients) and their gradient checks."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import dlcourse as dl
from conftest import TOL


def _normal(seed, *shape):
    "Normal values from a seed of their own: a case gets the same input whichever test builds it first"
    return np.random.default_rng(seed).normal(size=shape)


GRAD_CASES = {
    'ReLU': lambda: (dl.ReLU(), _normal(10, 3, 5), None),
    'LeakyReLU': lambda: (dl.LeakyReLU(0.2), _normal(11, 3, 5), None),
    'ELU': lambda: (dl.ELU(0.7), _normal(12, 3, 5), None),
    'Softplus': lambda: (dl.Softplus(), 3 * _normal(13, 3, 5), None),
}

dtypes = st.sampled_from([np.float32, np.float64])
shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4)


def torch_pair(torch, name, param):
    F = torch.nn.functional
    return {
        'relu': (lambda x: dl.relu(x), dl.relu_grad, lambda t: F.relu(t), dl.ReLU()),
        'leaky_relu': (lambda x: dl.leaky_relu(x, param), lambda x: dl.leaky_relu_grad(x, param),
                       lambda t: F.leaky_relu(t, param), dl.LeakyReLU(param)),
        'elu': (lambda x: dl.elu(x, param), lambda x: dl.elu_grad(x, param), lambda t: F.elu(t, param), dl.ELU(param)),
        'softplus': (dl.softplus, dl.softplus_grad, lambda t: F.softplus(t), dl.Softplus()),
    }[name]


@pytest.mark.parametrize('name', ['relu', 'leaky_relu', 'elu', 'softplus'])
@given(shape=shapes, dtype=dtypes, param=st.sampled_from([0.01, 0.2, 1.0, 1.7]), scale=st.sampled_from([1., 30.]),
       seed=st.integers(0, 2**16))
def test_against_torch(torch, name, shape, dtype, param, scale, seed):
    r = np.random.default_rng(seed)
    x, g = (scale * r.normal(size=shape)).astype(dtype), r.normal(size=shape).astype(dtype)
    f, df, tf, layer = torch_pair(torch, name, param)
    xt = torch.tensor(x, requires_grad=True)
    yt = tf(xt)
    yt.backward(torch.tensor(g))
    # torch's softplus switches to the identity above x = 20 (gradient exactly 1); ours keeps log1p(e^-x) = O(e^-20)
    tol = dict(rtol=1e-8, atol=1e-9) if name == 'softplus' and dtype == np.float64 else TOL[dtype]
    np.testing.assert_allclose(f(x), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(df(x) * g, xt.grad.numpy(), **tol)
    y = layer(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), **tol)


def test_gradients_at_zero_match_torch(torch):
    F = torch.nn.functional
    for ours, theirs in ((dl.relu_grad(np.zeros(2)), F.relu), (dl.leaky_relu_grad(np.zeros(2), 0.1), lambda t: F.leaky_relu(t, 0.1))):
        t = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        theirs(t).sum().backward()
        np.testing.assert_array_equal(ours, t.grad.numpy())


def test_extremes_are_silent():
    import warnings
    x = np.array([-1e4, -700., 0., 700., 1e4])
    with warnings.catch_warnings(), np.errstate(all='raise'):
        warnings.simplefilter('error')
        for f in (dl.softplus, dl.elu, dl.leaky_relu, dl.softplus_grad, dl.elu_grad):
            assert np.isfinite(f(x)).all(), f.__name__


@pytest.mark.parametrize('call,fragment', [
    (lambda: dl.LeakyReLU('0.1'), 'negative_slope must be a finite number'),
    (lambda: dl.ELU(alpha=float('nan')), 'alpha must be a finite number'),
    (lambda: dl.ReLU()(np.arange(3)), 'x must have dtype float32 or float64'),
    (lambda: dl.ELU().backward(np.ones(2)), 'before forward()'),
    (lambda: dl.elu([1, 'a']), 'x must be a real number'),
])
def test_bad_input(call, fragment):
    with pytest.raises((TypeError, ValueError), match=None) as info:
        call()
    assert fragment in str(info.value)
