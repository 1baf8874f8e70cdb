"""BatchNorm2d's kernels (engine.norm) against the lesson's NumPy functions `batch_norm` and `batch_norm_backward`, computed
in float64: in float32 and float64, in training and evaluation, below and above the size from which the kernels run
on several threads. The float32 bounds are derived from the roundings each value goes through."""
import numpy as np
import pytest

from dlcourse.kernels.config import SERIAL_VALUES
from dlcourse.zoo import BatchNorm2d, batch_norm, batch_norm_backward

SHAPES = [(5, 3, 4, 3), (4, 8, 64, SERIAL_VALUES // (4 * 8 * 64) + 1)]   # serial; parallel (just above SERIAL_VALUES)


@pytest.mark.parametrize('shape', SHAPES, ids=['serial', 'parallel'])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('train', [True, False], ids=['train', 'eval'])
def test_batch_norm_kernels_against_the_lesson(shape, dtype, train):
    rng = np.random.default_rng(3)
    C = shape[1]
    x = rng.normal(3, 2, size=shape).astype(dtype)                    # a mean away from 0: the subtraction matters
    g = rng.normal(size=shape).astype(dtype)
    bn = BatchNorm2d(C, dtype=dtype).train(train)
    bn.weight.data[:] = rng.uniform(-2, 2, C); bn.bias.data[:] = rng.uniform(-1, 1, C)
    bn.running_mean[:] = rng.uniform(2, 4, C); bn.running_var[:] = rng.uniform(2, 6, C)
    w, b = (a.astype(np.float64)[:, None, None] for a in (bn.weight.data, bn.bias.data))
    x64 = x.astype(np.float64)
    mean = x64.mean((0, 2, 3)) if train else bn.running_mean.astype(np.float64)
    var = x64.var((0, 2, 3)) if train else bn.running_var.astype(np.float64)
    xhat, inv_std = batch_norm(x64, mean, var, bn.eps)
    out, dx = bn(x), bn.backward(g)
    assert out.dtype == dx.dtype == bn.weight.grad.dtype == dtype and out.shape == dx.shape == shape
    ref_out = xhat * w + b
    ref_dx = batch_norm_backward(g * w, xhat, inv_std, train)
    ref_gw, ref_gb = (g * xhat).sum((0, 2, 3)), g.astype(np.float64).sum((0, 2, 3))
    if dtype == np.float64:
        np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(bn.weight.grad, ref_gw, rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(bn.bias.grad, ref_gb, rtol=1e-12, atol=1e-10)
        return
    # float32: each value goes through a handful of roundings of relative size eps: x - μ (with μ and 1/σ rounded to
    # float32 first: an error of eps(|x| + |μ|)/σ in x̂), the products with 1/σ and γ, the sum with β; 16 eps covers them
    eps = np.finfo(np.float32).eps
    r = inv_std[:, None, None]
    xhat_err = (np.abs(x64) + np.abs(mean)[:, None, None]) * r             # |x̂|'s error, in units of eps
    assert (np.abs(out - ref_out) <= 16 * eps * (np.abs(w) * (np.abs(xhat) + xhat_err) + np.abs(b))).all()
    mg, mgx = g.mean((0, 2, 3), keepdims=True), (g * xhat).mean((0, 2, 3), keepdims=True)   # dx = γ/σ (g - mg - x̂ mgx)
    bound = 16 * eps * np.abs(w) * r * (np.abs(g) + np.abs(mg) + (np.abs(xhat) + xhat_err) * np.abs(mgx))
    assert (np.abs(dx - ref_dx) <= bound).all()
    gsum = (np.abs(g) * (np.abs(xhat) + xhat_err)).sum((0, 2, 3))          # sums in float64: the terms' errors dominate
    assert (np.abs(bn.weight.grad - ref_gw) <= 16 * eps * gsum).all()
    assert (np.abs(bn.bias.grad - ref_gb) <= 16 * eps * np.abs(g).sum((0, 2, 3))).all()


def test_batch_norm_statistics_of_a_large_mean():
    "Two passes (mean, then the squares around it): a channel at 1e4 with spread 1 keeps its variance in float32"
    from dlcourse.engine.norm import batch_statistics
    rng = np.random.default_rng(0)
    x = (1e4 + rng.normal(size=(16, 2, 8, 8))).astype(np.float32)
    mean, var = batch_statistics(x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean((0, 2, 3)), rtol=2 * np.finfo(np.float32).eps)
    np.testing.assert_allclose(var, x64.var((0, 2, 3)), rtol=4 * np.finfo(np.float32).eps)


def test_a_nan_stays_in_its_channel():
    "A NaN in channel 1 makes channel 1's output NaN in training (its statistics), and leaves channel 0 finite"
    x = np.random.default_rng(0).normal(size=(4, 2, 3, 3)).astype(np.float32)
    x[2, 1, 1, 1] = np.nan
    out = BatchNorm2d(2)(x)
    assert np.isfinite(out[:, 0]).all() and np.isnan(out[:, 1]).all()
