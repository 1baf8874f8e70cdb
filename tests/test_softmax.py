"""Softmax, log-softmax and cross-entropy against PyTorch: values and gradients, extreme logits, bad targets."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import dlcourse as dl
from dlcourse.losses import CrossEntropyLoss, cross_entropy, log_softmax, softmax
from conftest import TOL

GRAD_CASES = {
    'CrossEntropyLoss': lambda: (CrossEntropyLoss(), np.random.default_rng(0).normal(size=(5, 4)), np.array([0, 3, 1, 1, 2])),
    'Softmax': lambda: (dl.Softmax(), np.random.default_rng(3).normal(size=(4, 6)), None),
    'CrossEntropyLoss-soft-sum': lambda: (CrossEntropyLoss('sum'), np.random.default_rng(1).normal(size=(3, 4)),
                                          np.random.default_rng(2).dirichlet(np.ones(4), 3)),
}
dtypes = st.sampled_from([np.float32, np.float64])


@given(n=st.integers(1, 8), c=st.integers(1, 12), dtype=dtypes, scale=st.sampled_from([1., 50., 1e4]),
       seed=st.integers(0, 2**16))
def test_softmax_log_softmax(torch, n, c, dtype, scale, seed):
    z = (scale * np.random.default_rng(seed).normal(size=(n, c))).astype(dtype)
    zt = torch.tensor(z)
    np.testing.assert_allclose(softmax(z), torch.softmax(zt, -1).numpy(), **TOL[dtype])
    lp = log_softmax(z)
    assert lp.dtype == dtype
    np.testing.assert_allclose(lp, torch.log_softmax(zt, -1).numpy(), rtol=TOL[dtype]['rtol'], atol=TOL[dtype]['atol'] * scale)


@pytest.mark.parametrize('reduction', ['mean', 'sum'])
@pytest.mark.parametrize('soft', [False, True])
@given(n=st.integers(1, 8), c=st.integers(2, 12), dtype=dtypes, scale=st.sampled_from([1., 30., 1e4]),
       seed=st.integers(0, 2**16))
def test_cross_entropy(torch, reduction, soft, n, c, dtype, scale, seed):
    rng = np.random.default_rng(seed)
    z = (scale * rng.normal(size=(n, c))).astype(dtype)
    target = rng.dirichlet(np.ones(c), n).astype(dtype) if soft else rng.integers(0, c, n)
    zt = torch.tensor(z, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(zt, torch.tensor(target), reduction=reduction)
    ref.backward()
    loss_fn = CrossEntropyLoss(reduction)
    with warnings.catch_warnings(), np.errstate(all='raise'):
        warnings.simplefilter('error')
        loss = loss_fn(z, target)
        g = loss_fn.backward()
    assert g.dtype == dtype and np.isfinite(loss) and np.isfinite(g).all()
    np.testing.assert_allclose(loss, ref.item(), rtol=TOL[dtype]['rtol'] * 10, atol=TOL[dtype]['atol'] * scale * n)
    np.testing.assert_allclose(g, zt.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(cross_entropy(z, target, reduction), loss)


def test_uint8_labels_and_top_level_names():
    z = np.zeros((3, 10), np.float32)
    assert dl.CrossEntropyLoss()(z, np.array([0, 9, 4], np.uint8)) == pytest.approx(np.log(10))
    assert dl.softmax is softmax and dl.cross_entropy is cross_entropy


@pytest.mark.parametrize('logits,target,exc,fragment', [
    (np.zeros((2, 3)), np.array([0, 3]), ValueError, 'outside [0, 3): [3]'),
    (np.zeros((2, 3)), np.array([-1, 0]), ValueError, 'outside [0, 3): [-1]'),
    (np.zeros((2, 3)), np.array([0., 1.]), TypeError, 'integer class indices'),
    (np.zeros((2, 3)), np.array([[0, 1]]), ValueError, 'target must have shape (2,)'),
    (np.zeros(3), np.array([0]), ValueError, 'logits must have shape (N, C)'),
    (np.zeros((2, 3), int), np.array([0, 1]), TypeError, 'logits must have dtype'),
    (np.zeros((2, 3)), np.full((2, 3), 0.5), ValueError, 'sum to 1'),
    (np.zeros((2, 3)), np.array([[1., 0, 0], [np.nan, 0, 1]]), ValueError, 'target contains NaN'),
    (np.zeros((2, 3)), [0, 1], TypeError, 'target must be a numpy.ndarray'),
])
def test_bad_targets(logits, target, exc, fragment):
    with pytest.raises(exc) as info:
        CrossEntropyLoss()(logits, target)
    assert fragment in str(info.value)


def test_nan_logits_give_nan_loss_not_an_exception():
    "A diverged network's NaN output must reach the training loop's divergence check as a NaN loss"
    loss = CrossEntropyLoss()(np.array([[np.nan, 0.]]), np.array([0]))
    assert np.isnan(loss)


@given(n=st.integers(1, 6), c=st.integers(1, 8), dtype=dtypes, seed=st.integers(0, 2**16))
def test_softmax_layer(torch, n, c, dtype, seed):
    rng = np.random.default_rng(seed)
    x, g = (5 * rng.normal(size=(n, c))).astype(dtype), rng.normal(size=(n, c)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.softmax(xt, -1)
    yt.backward(torch.tensor(g))
    layer = dl.Softmax()
    np.testing.assert_allclose(layer(x), yt.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), **TOL[dtype])
