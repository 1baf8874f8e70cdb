"""BatchNorm2d's kernels (engine.norm) against the lesson's NumPy functions `batch_norm` and `batch_norm_backward`, computed
in float64: in float32 and float64, in training and evaluation, below and above the size from which the kernels run
on several threads; LocalResponseNorm's kernels against `lrn` and `lrn_backward` the same way. The float32 bounds are
derived from the roundings each value goes through."""
import numpy as np
import pytest

from dlcourse.kernels.config import SERIAL_VALUES
from dlcourse.zoo import BatchNorm2d, LocalResponseNorm, _channel_window_sum, batch_norm, batch_norm_backward, lrn, lrn_backward

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


# Batch normalisation and the ReLU after it in one pass (engine.fusion.BatchNormReLU), below the layer API

def _run(model, x, fused, seed=0):
    "Output, dE/dx and every parameter's gradient of one forward and backward pass, with fusion on or off"
    from dlcourse.engine.fusion import fusion
    g = np.random.default_rng(seed).normal(size=model(x).shape).astype(x.dtype)
    with fusion(fused):
        model.zero_grad()
        out = model(x)
        dx = model.backward(g)
    return [out, dx] + [p.grad.copy() for p in model.parameters()]


def _bound(want, dtype, terms):
    "Largest difference two summation orders of `terms` float values of this size can give (absolute, per array)"
    return 4 * terms * np.finfo(dtype).eps * max(1.0, float(np.abs(want).max()))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('train', [True, False], ids=['train', 'eval'])
def test_residual_block_fused_matches_its_layers(dtype, train):
    """A ResNet block computes relu(bn1(.)) and relu(bn2(.) + shortcut) in the batch-norm pass; its output, dE/dx and
    gradients are those of the layers one by one (the same operations; the bound allows float32's reassociated sums)"""
    from dlcourse.engine.fusion import BatchNormReLU
    from dlcourse.zoo import BasicBlock
    N, C, H, W = shape = (3, 4, 5, 6)
    for block in (BasicBlock(C, C, 1, dtype=dtype, rng=1), BasicBlock(C, 2 * C, 2, dtype=dtype, rng=1)):
        rng = np.random.default_rng(2)
        for bn in (block.bn1, block.bn2):
            bn.weight.data[:] = rng.uniform(-2, 2, bn.num_features); bn.bias.data[:] = rng.uniform(-1, 1, bn.num_features)
            bn.running_mean[:] = rng.uniform(-1, 1, bn.num_features); bn.running_var[:] = rng.uniform(0.5, 2, bn.num_features)
        block.train(train)
        x = rng.normal(size=shape).astype(dtype)
        state = {k: v.copy() for k, v in block.state_dict().items()}
        fused = _run(block, x, True)
        assert isinstance(block.bn1.__dict__.get('_fused'), BatchNormReLU)      # it did fuse
        block.load_state_dict(state)                                            # the running statistics as before
        plain = _run(block, x, False)
        for a, b in zip(fused, plain):
            np.testing.assert_allclose(a, b, rtol=0, atol=_bound(b, dtype, C * 9 * 4))
        np.testing.assert_array_equal(fused[0] >= 0, True)                       # the block ends in a ReLU


@pytest.mark.parametrize('shape', SHAPES, ids=['serial', 'parallel'])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('train', [True, False], ids=['train', 'eval'])
def test_fused_step_matches_the_layers(shape, dtype, train):
    "relu(bn(x) (+ residual)) in one pass, below and above the size from which the kernel runs on several threads"
    from dlcourse.activations import ReLU
    from dlcourse.engine.fusion import BatchNormReLU
    rng = np.random.default_rng(5)
    x, res, g = (rng.normal(1, 2, size=shape).astype(dtype) for _ in range(3))
    for residual in (None, res):
        bn, act = BatchNorm2d(shape[1], dtype=dtype).train(train), ReLU()
        bn.weight.data[:] = rng.uniform(-2, 2, shape[1]); bn.bias.data[:] = rng.uniform(-1, 1, shape[1])
        bn.running_mean[:] = rng.uniform(0, 2, shape[1]); bn.running_var[:] = rng.uniform(1, 3, shape[1])
        state = {k: v.copy() for k, v in bn.state_dict().items()}
        step = BatchNormReLU(bn, act)
        out = step(x) if residual is None else step(x, residual)
        dx, gw, gb = step.backward(g), bn.weight.grad.copy(), bn.bias.grad.copy()
        bn.load_state_dict(state); bn.zero_grad()
        y = bn(x)
        want = act(y if residual is None else y + residual)
        want_dx = bn.backward(act.backward(g))
        np.testing.assert_array_equal(out >= 0, True)
        for got, ref in ((out, want), (dx, want_dx), (gw, bn.weight.grad), (gb, bn.bias.grad)):
            np.testing.assert_allclose(got, ref, rtol=0, atol=_bound(ref, dtype, 4))


def test_sequential_fuses_batch_norm_and_relu_only():
    "A Sequential fuses BatchNorm2d + ReLU into one step; not with another activation, nor with a forward hook on either"
    from dlcourse.activations import LeakyReLU, ReLU
    from dlcourse.conv import Conv2d
    from dlcourse.core import Sequential
    from dlcourse.engine.fusion import BatchNormReLU
    x = np.random.default_rng(0).normal(size=(4, 3, 6, 6))
    net = Sequential(Conv2d(3, 5, 3, padding=1, dtype=np.float64, rng=0), BatchNorm2d(5, dtype=np.float64), ReLU())
    fused = _run(net, x, True)
    steps = [type(s) for s in net._steps]
    plain = _run(net, x, False)
    assert steps == [Conv2d, BatchNormReLU]
    for a, b in zip(fused, plain): np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    other = Sequential(BatchNorm2d(3, dtype=np.float64), LeakyReLU(0.1))
    other(x)
    assert [type(s) for s in other._steps] == [BatchNorm2d, LeakyReLU]
    seen = []
    net[2].register_forward_hook(lambda m, i, o: seen.append(o))                 # a hook wants the ReLU's own output
    out = net(x)
    assert [type(s) for s in net._steps] == [Conv2d, BatchNorm2d, ReLU] and seen[0] is out


def test_fused_residual_is_checked():
    "The residual must have the output's shape (ValueError) and dtype (TypeError): a clear error, not a broadcast"
    from dlcourse.activations import ReLU
    from dlcourse.engine.fusion import BatchNormReLU
    step = BatchNormReLU(BatchNorm2d(2), ReLU())
    x = np.ones((3, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match='residual'): step(x, np.ones((3, 2, 4, 1), np.float32))
    with pytest.raises(TypeError, match='residual'): step(x, np.ones((3, 2, 4, 4), np.float64))
    out = step(x + np.arange(4, dtype=np.float32), -np.ones((3, 2, 4, 4), np.float32))
    want = np.maximum(BatchNorm2d(2)(x + np.arange(4, dtype=np.float32)) - 1, 0)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


def test_fused_relu_keeps_nan():
    "relu(NaN) is NaN in the fused pass too (as ReLU's own kernel): a NaN is not hidden as 0"
    from dlcourse.activations import ReLU
    from dlcourse.engine.fusion import BatchNormReLU
    x = np.random.default_rng(0).normal(size=(4, 2, 3, 3)).astype(np.float32)
    res = np.zeros_like(x); res[1, 0, 2, 2] = np.nan
    out = BatchNormReLU(BatchNorm2d(2), ReLU())(x, res)
    assert np.isnan(out[1, 0, 2, 2]) and np.isfinite(np.delete(out.reshape(-1), np.ravel_multi_index((1, 0, 2, 2), x.shape))).all()


# Local response normalisation (engine.norm.local_response_norm)

LRN_CASES = ([(SHAPES[0], n, beta) for n in (1, 2, 5, 8) for beta in (0.75, 0.6)]      # β = 0.75: square roots, else pow
             + [(SHAPES[1], 5, 0.75), (SHAPES[1], 4, 0.6)])


@pytest.mark.parametrize('shape, n, beta', LRN_CASES, ids=[f"{'serial' if s == SHAPES[0] else 'parallel'}-n{n}-beta{b}"
                                                           for s, n, b in LRN_CASES])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_lrn_kernels_against_the_lesson(shape, n, beta, dtype):
    """Output and dE/dx of the layer against the NumPy formulas in float64. Bounds: s = k + α/n Σ x² is a sum of n + 1
    positive terms (n + 3 roundings with α/n and the squares); s^-β, x·s^-β and dout·x·s^(-β-1) add a few more; dE/dx
    subtracts the window sum of those terms, whose error is that of the sum of their absolute values"""
    rng = np.random.default_rng(n)
    alpha, k = 1.0, 2.0
    x, g = (2 * rng.normal(size=shape)).astype(dtype), rng.normal(size=shape).astype(dtype)
    layer = LocalResponseNorm(n, alpha, beta, k)
    out, dx = layer(x), layer.backward(g)
    assert out.dtype == dx.dtype == dtype and out.shape == dx.shape == shape
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    ref, s = lrn(x64, n, alpha, beta, k)
    ref_dx = lrn_backward(g64, x64, s, n, alpha, beta)
    eps, rounds = np.finfo(dtype).eps, 2 * (n + 15)
    assert (np.abs(out - ref) <= rounds * eps * np.abs(ref)).all()
    terms = np.abs(g64 * x64 * s ** (-beta - 1))                            # |dout · x · s^(-β-1)|, summed as the kernel
    window = _channel_window_sum(terms, -((n - 1) // 2), n // 2)
    bound = rounds * eps * (np.abs(g64) * s ** -beta + 2 * alpha * beta / n * np.abs(x64) * window)
    assert (np.abs(dx - ref_dx) <= bound).all()


def test_lrn_of_zeros_inf_and_nan():
    """Zero in, zero out (s = k); an infinite value makes s infinite in its window: the output there is 0 (0 · inf^-β) beside
    it and NaN at it (inf · 0), as NumPy's; a NaN stays in its window; forward and backward"""
    x = np.zeros((1, 5, 2, 2), np.float32)
    x[0, 2, 0, 0], x[0, 0, 1, 1] = np.inf, np.nan
    g = np.ones_like(x)
    for beta in (0.75, 0.6):
        layer = LocalResponseNorm(3, 1.0, beta, 2.0)
        out, dx = layer(x), layer.backward(g)
        with np.errstate(invalid='ignore'):
            want, s = lrn(x.astype(np.float64), 3, 1.0, beta, 2.0)
            want_dx = lrn_backward(g.astype(np.float64), x.astype(np.float64), s, 3, 1.0, beta)
        for a, b in ((out, want), (dx, want_dx)):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-6)
        assert out[0, 1, 0, 0] == out[0, 3, 0, 0] == 0 and out[0, 4, 0, 0] == 0      # x = 0 beside the inf: 0, as NumPy
