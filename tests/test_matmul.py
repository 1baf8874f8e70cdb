"""The fully connected layers' matrix products (dlcourse.engine.matmul) in each of their regimes: the course's kernel for
small products, rank-one updates for a weight gradient over a short batch, and BLAS on transposed views, each against
the product computed in float64."""
import numpy as np
import pytest

from dlcourse.engine import matmul
from dlcourse.kernels import config


@pytest.fixture(params=['kernel', 'rank-update', 'blas'])
def regime(request, monkeypatch):
    "Force one regime by moving the thresholds (the shapes below are small in every regime)"
    monkeypatch.setattr(config, 'BLAS_MIN_MACS', 1 << 40 if request.param == 'kernel' else 0)
    monkeypatch.setattr(config, 'RANK_UPDATE_MAX', 1 << 30 if request.param == 'rank-update' else 0)
    return request.param


def bound(a, b, dtype):
    "Error bound of a sum of Q products in `dtype`: Q * eps * sum |a_q| |b_q| (a loose, order-independent bound)"
    return a.shape[-1] * np.finfo(dtype).eps * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('Q,I,J', [(1, 1, 1), (3, 17, 5), (16, 33, 70), (17, 8, 9), (40, 3, 129)])
@pytest.mark.parametrize('accumulate', [False, True])
def test_products_match_float64(regime, dtype, Q, I, J, accumulate):
    rng = np.random.default_rng(Q * 1000 + I * 10 + J)
    a, b = rng.normal(size=(Q, I)).astype(dtype), rng.normal(size=(Q, J)).astype(dtype)
    start = rng.normal(size=(I, J)).astype(dtype)
    out = start.copy()
    assert matmul.matmul_tn(a, b, out, accumulate=accumulate) is out
    want = a.T.astype(np.float64) @ b + (start if accumulate else 0)
    assert (np.abs(out - want) <= bound(a.T, b, dtype) + np.finfo(dtype).eps * np.abs(want)).all()
    c = rng.normal(size=(I, J)).astype(dtype)          # matmul_nn: (Q, I) @ (I, J)
    got = matmul.matmul_nn(a, c)
    assert got.shape == (Q, J) and got.dtype == dtype
    assert (np.abs(got - a.astype(np.float64) @ c) <= bound(a, c, dtype)).all()
    d = rng.normal(size=(J, I)).astype(dtype)          # matmul_nt: (Q, I) @ (J, I).T
    got = matmul.matmul_nt(a, d)
    assert (np.abs(got - a.astype(np.float64) @ d.T) <= bound(a, d.T, dtype)).all()


def test_rank_update_sums_in_batch_order():
    "Each element of a rank update is the sum over q = 0, 1, ... in that order: the result is the same for any threads"
    a = np.array([[1.0], [1e8], [-1e8]], np.float32)             # (Q=3, I=1)
    b = np.array([[1.0], [1.0], [1.0]], np.float32)              # (Q=3, J=1)
    out = np.zeros((1, 1), np.float32)
    from dlcourse.kernels.conv import rank_update
    rank_update(a, b, out, False)
    assert out[0, 0] == np.float32((np.float32(1.0) + np.float32(1e8)) - np.float32(1e8))   # 0: the 1 is absorbed


def test_large_layer_gradients_take_no_transposed_copies():
    "A Linear layer's backward at batch 8 with a large weight gives the float64 gradients (the rank-update path)"
    from dlcourse.layers import Linear
    layer = Linear(4500, 1000, rng=0)                              # 4.5M weights: above BLAS_MIN_MACS at batch 8
    assert 8 * 4500 * 1000 >= config.BLAS_MIN_MACS and 8 <= config.RANK_UPDATE_MAX
    rng = np.random.default_rng(1)
    x, dout = rng.normal(size=(8, 4500)).astype(np.float32), rng.normal(size=(8, 1000)).astype(np.float32)
    layer(x)
    dx = layer.backward(dout)
    w = layer.weight.data.astype(np.float64)
    assert (np.abs(dx - dout.astype(np.float64) @ w) <= bound(dout, w, np.float32)).all()
    gw = dout.T.astype(np.float64) @ x
    assert (np.abs(layer.weight.grad - gw) <= bound(dout.T, x, np.float32)).all()


@pytest.mark.parametrize('I,J,Q', [(1, 1, 1), (3, 5, 7), (64, 128, 127), (64, 128, 128), (65, 131, 130)])
@pytest.mark.parametrize('accumulate', [False, True])
def test_small_products_skip_the_parallel_kernel_with_the_same_bits(I, J, Q, accumulate):
    """apply_gemm_nt runs products below SERIAL_MACS multiply-adds on the calling thread (the shapes straddle it) with
    the blocks gemm_nt runs: the same bits as gemm_nt, within the float32 bound of the float64 product"""
    from dlcourse.kernels.conv import SERIAL_MACS, apply_gemm_nt, gemm_nt
    assert (I * J * Q < SERIAL_MACS) == ((I, J, Q) in [(1, 1, 1), (3, 5, 7), (64, 128, 127)])
    rng = np.random.default_rng(I + J + Q)
    a, b = rng.normal(size=(I, Q)).astype(np.float32), rng.normal(size=(J, Q)).astype(np.float32)
    start = rng.normal(size=(I, J)).astype(np.float32)
    got, want = start.copy(), start.copy()
    apply_gemm_nt(a, b, got, accumulate)
    gemm_nt(a, b, want, accumulate)
    assert np.array_equal(got, want)
    exact = a.astype(np.float64) @ b.T.astype(np.float64) + (start if accumulate else 0)
    assert (np.abs(got - exact) <= bound(a, b.T, np.float32) + np.finfo(np.float32).eps * np.abs(exact)).all()


@pytest.mark.parametrize('batch', [1, 4, 16])
def test_short_batch_backward_reads_a_large_weight_in_place(batch, monkeypatch):
    """At a short batch, a Linear layer's backward with a large weight but few multiply-adds (below BLAS_MIN_MACS) takes
    no transposed copy of the weight or of the input: the input gradient is BLAS on the weight in place, the weight
    gradient rank-one updates (a copy of VGG-16's 4096 x 4096 weight cost 15x the product at batch 1)"""
    from dlcourse.layers import Linear
    layer = Linear(1024, 300, rng=0)
    assert batch * 1024 * 300 < config.BLAS_MIN_MACS and 1024 * 300 >= config.SERIAL_VALUES
    rng = np.random.default_rng(batch)
    x, dout = rng.normal(size=(batch, 1024)).astype(np.float32), rng.normal(size=(batch, 300)).astype(np.float32)
    layer(x)
    calls = []
    monkeypatch.setattr(matmul, 'apply_gemm_nt', lambda *a: calls.append([e.shape for e in a[:3]]))
    dx = layer.backward(dout)
    assert calls == []                                             # neither product went to the copying kernel path
    w = layer.weight.data.astype(np.float64)
    assert (np.abs(dx - dout.astype(np.float64) @ w) <= bound(dout, w, np.float32)).all()
    gw = dout.T.astype(np.float64) @ x
    assert (np.abs(layer.weight.grad - gw) <= bound(dout.T, x, np.float32)).all()


@pytest.mark.parametrize('name', ['matmul_nt', 'matmul_nn', 'matmul_tn'])
def test_products_reject_operands_that_do_not_fit(name):
    "Every product checks its operands before a kernel reads them: a wrong shape would read or write past an array"
    f = getattr(matmul, name)
    a = np.ones((4, 6), np.float32)
    b = {'matmul_nt': np.ones((5, 6), np.float32), 'matmul_nn': np.ones((6, 5), np.float32),
         'matmul_tn': np.ones((4, 5), np.float32)}[name]
    good_out = np.zeros((6, 5) if name == 'matmul_tn' else (4, 5), np.float32)
    assert f(a, b, good_out) is good_out                           # the shapes that fit work
    bad_out = np.zeros((good_out.shape[0], good_out.shape[1] - 1), np.float32)
    with pytest.raises(ValueError, match='out must have shape'): f(a, b, bad_out)
    with pytest.raises(ValueError, match='b has shape'): f(a, b[:-1].copy() if name != 'matmul_nt' else b[:, :-1].copy(), good_out)
    with pytest.raises(TypeError, match="b has dtype float64"): f(a, b.astype(np.float64), good_out)
    with pytest.raises(TypeError, match='out has dtype float64'): f(a, b, good_out.astype(np.float64))
    with pytest.raises(ValueError, match='C-contiguous'): f(np.ones((6, 4), np.float32).T, b, good_out)
    with pytest.raises(ValueError, match='2-D'): f(a.ravel(), b, good_out)
    with pytest.raises(TypeError, match='numpy.ndarray'): f(a.tolist(), b, good_out)
    with pytest.raises(TypeError, match='float32 or float64'): f(a.astype(np.int64), b, good_out)
    read_only = good_out.copy(); read_only.flags.writeable = False
    with pytest.raises(ValueError, match='writeable'): f(a, b, read_only)
