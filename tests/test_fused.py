"""Fused layers and the speed kernels (lesson 08b_speed): ConvActPool, LinearAct and fuse() against PyTorch and against the
unfused layers; gemm_nt and the fully connected route of Conv2d; tanh_f32; bit-identical results for a fixed seed, also
across thread counts; the kernels without JIT and from the cache. The float64 gradient checks are in GRAD_CASES.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, strategies as st

from conftest import TOL, compiled_env
from dlcourse.activations import ReLU, Sigmoid, Tanh
from dlcourse.conv import Conv2d, conv2d, conv2d_backward
from dlcourse.core import Sequential
from dlcourse.fused import ConvActPool, LinearAct, fuse
from dlcourse.kernels.conv import gemm_nt
from dlcourse.kernels.fused import tanh_f32
from dlcourse.layers import Flatten, Linear
from dlcourse.losses import CrossEntropyLoss
from dlcourse.optim import SGD
from dlcourse.pool import AvgPool2d, MaxPool2d
from dlcourse.zoo import lenet5

ACT = {'tanh': Tanh, 'relu': ReLU, 'sigmoid': Sigmoid}
POOL = {'max': MaxPool2d, 'avg': AvgPool2d}
def _normal(seed, *shape):
    "Normal values from a seed of their own: a case gets the same input whichever test builds it first"
    return np.random.default_rng(seed).normal(size=shape)


GRAD_CASES = {
    'ConvActPool-tanh-max': lambda: (ConvActPool(Conv2d(2, 3, 3, padding=1, rng=1), 'tanh', 'max'),
                                     _normal(10, 2, 2, 6, 7), None),
    'ConvActPool-sigmoid-avg': lambda: (ConvActPool(Conv2d(2, 3, (2, 3), rng=2), 'sigmoid', 'avg'),
                                        _normal(11, 2, 2, 7, 6), None),
    'ConvActPool-nobias': lambda: (ConvActPool(Conv2d(1, 2, 3, bias=False, rng=3), None, 'max'),
                                   _normal(12, 2, 1, 6, 6), None),
    'LinearAct-tanh': lambda: (LinearAct(Linear(5, 4, rng=4), 'tanh'), _normal(13, 3, 5), None),
    'LinearAct-nobias': lambda: (LinearAct(Linear(5, 4, bias=False, rng=5), 'sigmoid'), _normal(14, 3, 5), None),
}


def torch_dtype(torch, dtype): return getattr(torch, np.dtype(dtype).name)


def close(got, want, dtype):
    want = want.detach().numpy() if hasattr(want, 'detach') else want
    scale = float(np.abs(want).max(initial=0)) or 1.0
    np.testing.assert_allclose(got / scale, want / scale, rtol=0, atol=100 * TOL[dtype]['rtol'])


@given(N=st.integers(0, 3), C=st.integers(1, 3), K=st.integers(1, 5), H=st.integers(2, 11), W=st.integers(2, 11),
       kh=st.integers(1, 4), kw=st.integers(1, 4), P=st.integers(0, 2), act=st.sampled_from([None, 'tanh', 'relu', 'sigmoid']),
       pool=st.sampled_from(['max', 'avg']), bias=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_conv_act_pool_matches_torch(torch, N, C, K, H, W, kh, kw, P, act, pool, bias, dtype, seed):
    "ConvActPool against torch's conv, activation and pooling (odd sizes: the pooling floors), with all gradients"
    if H + 2 * P - kh + 1 < 2 or W + 2 * P - kw + 1 < 2: return           # no 2x2 window fits: refused (tested below)
    rng = np.random.default_rng(seed)
    conv = Conv2d(C, K, (kh, kw), padding=P, bias=bias, dtype=dtype, rng=seed)
    fused = ConvActPool(conv, act, pool)
    nn = torch.nn
    ref = nn.Sequential(nn.Conv2d(C, K, (kh, kw), padding=P, bias=bias, dtype=torch_dtype(torch, dtype)),
                        {None: nn.Identity, 'tanh': nn.Tanh, 'relu': nn.ReLU, 'sigmoid': nn.Sigmoid}[act](),
                        (nn.MaxPool2d if pool == 'max' else nn.AvgPool2d)(2, 2))
    ref[0].load_state_dict({k: torch.tensor(v) for k, v in conv.state_dict().items()})
    x = rng.normal(size=(N, C, H, W)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    out_t = ref(xt)
    y = fused(x)
    assert y.dtype == dtype and y.shape == tuple(out_t.shape)
    close(y, out_t, dtype)
    dout = rng.normal(size=y.shape).astype(dtype)
    out_t.backward(torch.tensor(dout))
    close(fused.backward(dout), xt.grad, dtype)
    close(conv.weight.grad, ref[0].weight.grad, dtype)
    if bias: close(conv.bias.grad, ref[0].bias.grad, dtype)


@pytest.mark.parametrize('act', ['tanh', 'relu', 'sigmoid'])
@pytest.mark.parametrize('pool', ['max', 'avg'])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_conv_act_pool_matches_the_layers(act, pool, dtype):
    "The fused layer computes what Conv2d, the activation and the pooling layer compute, LeNet-5's shapes, accumulating"
    rng = np.random.default_rng(1)
    conv = Conv2d(6, 16, 5, dtype=dtype, rng=1)
    fused, ref = ConvActPool(conv, act, pool), Sequential(conv, ACT[act](), POOL[pool](2, 2))
    x = rng.normal(size=(8, 6, 14, 14)).astype(dtype)
    eps = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(fused(x), ref(x), atol=eps)
    dout = rng.normal(size=(8, 16, 5, 5)).astype(dtype)
    conv.zero_grad(); ref(x); dx_ref = ref.backward(dout); ref.backward(dout)
    grads_ref = [p.grad.copy() for p in conv.parameters()]
    conv.zero_grad(); fused(x); dx = fused.backward(dout); fused.backward(dout)
    np.testing.assert_allclose(dx, dx_ref, atol=10 * eps)
    for g, h in zip(conv.parameters(), grads_ref): np.testing.assert_allclose(g.grad, h, atol=100 * eps, rtol=10 * eps)


def test_conv_act_pool_shares_parameters_and_checks_input():
    conv = Conv2d(3, 4, 3, padding=1, rng=0)
    fused = ConvActPool(conv, 'relu', 'avg', input_grad=False)
    assert fused.weight is conv.weight and fused.bias is conv.bias
    assert list(fused.state_dict()) == ['weight', 'bias']
    y = fused(np.ones((2, 3, 8, 8), np.float32))
    assert y.shape == (2, 4, 4, 4) and fused.backward(np.ones_like(y)) is None
    assert repr(fused) == "ConvActPool(3, 4, kernel_size=(3, 3), padding=(1, 1), activation='relu', pool='avg', input_grad=False)"
    for call, exc, text in [
        (lambda: ConvActPool(Conv2d(3, 4, 3, stride=2), 'tanh', 'max'), ValueError, 'needs a convolution with stride 1'),
        (lambda: ConvActPool(conv, 'gelu', 'max'), ValueError, "activation must be one of [None, 'tanh', 'relu', 'sigmoid']"),
        (lambda: ConvActPool(conv, 'tanh', 'sum'), ValueError, "pool must be one of ['max', 'avg']"),
        (lambda: ConvActPool(Linear(2, 2), 'tanh', 'max'), TypeError, 'conv must be a Conv2d'),
        (lambda: fused(np.ones((2, 2, 8, 8), np.float32)), ValueError, 'x must have shape (N, 3, H, W)'),
        (lambda: fused(np.ones((2, 3, 8, 8))), TypeError, 'x has dtype float64, expected float32'),
        (lambda: ConvActPool(Conv2d(1, 1, 3), 'tanh', 'max')(np.ones((1, 1, 3, 3), np.float32)), ValueError, 'too small for 2x2 pooling'),
        (lambda: ConvActPool(Conv2d(1, 1, 3), 'tanh', 'max').backward(np.ones((1, 1, 1, 1), np.float32)), ValueError, 'before forward()'),
    ]:
        with pytest.raises(exc) as e: call()
        assert text in str(e.value), str(e.value)


def test_nan_propagates():
    "A NaN in the input shows up in every pooled output that reads it (max pooling takes NaN, as max_pool2d does)"
    x = np.zeros((1, 1, 8, 8), np.float32); x[0, 0, 3, 3] = np.nan
    conv = Conv2d(1, 2, 3, padding=1, rng=0)
    for pool in ('max', 'avg'):
        y, ref = ConvActPool(conv, 'tanh', pool)(x), Sequential(conv, Tanh(), POOL[pool](2, 2))(x)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
        assert np.isnan(y).sum() == 2 * 4


@given(N=st.integers(0, 5), fin=st.integers(1, 12), fout=st.integers(1, 12), act=st.sampled_from([None, 'tanh', 'relu', 'sigmoid']),
       bias=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_linear_act_matches_torch(torch, N, fin, fout, act, bias, dtype, seed):
    rng = np.random.default_rng(seed)
    lin = Linear(fin, fout, bias=bias, dtype=dtype, rng=seed)
    fused, nn = LinearAct(lin, act), torch.nn
    ref = nn.Sequential(nn.Linear(fin, fout, bias=bias, dtype=torch_dtype(torch, dtype)),
                        {None: nn.Identity, 'tanh': nn.Tanh, 'relu': nn.ReLU, 'sigmoid': nn.Sigmoid}[act]())
    ref[0].load_state_dict({k: torch.tensor(v) for k, v in lin.state_dict().items()})
    x, dout = rng.normal(size=(N, fin)).astype(dtype), rng.normal(size=(N, fout)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    out_t = ref(xt)
    out_t.backward(torch.tensor(dout))
    close(fused(x), out_t, dtype)
    close(fused.backward(dout), xt.grad, dtype)
    close(lin.weight.grad, ref[0].weight.grad, dtype)
    if bias: close(lin.bias.grad, ref[0].bias.grad, dtype)


@given(I=st.integers(0, 9), J=st.integers(1, 9), Q=st.integers(1, 40), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_gemm_nt(I, J, Q, dtype, seed):
    "a @ b.T for all shapes (the 2x4 blocks clamp at odd edges), overwriting and accumulating"
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(I, Q)).astype(dtype), rng.normal(size=(J, Q)).astype(dtype)
    want = a.astype(np.float64) @ b.T.astype(np.float64)
    out = np.full((I, J), np.nan, dtype)
    gemm_nt(a, b, out, False)
    tol = dict(rtol=TOL[dtype]['rtol'], atol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(out, want, **tol)
    gemm_nt(a, b, out, True)
    np.testing.assert_allclose(out, 2 * want, **tol)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('stride,padding', [(1, 0), (2, 0), (1, 1), ((3, 2), (1, 2))])
def test_conv_fully_connected_route(torch, dtype, stride, padding):
    "A filter as large as the padded input (LeNet-5's C5): Conv2d's fully connected route against torch"
    rng = np.random.default_rng(2)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    x = rng.normal(size=(5, 16, 5, 4)).astype(dtype)
    w, b = rng.normal(size=(7, 16, 5 + 2 * ph, 4 + 2 * pw)).astype(dtype), rng.normal(size=7).astype(dtype)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    out_t = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=padding)
    y = conv2d(x, w, b, stride, padding)
    assert y.shape == (5, 7, 1, 1)
    close(y, out_t, dtype)
    dout = rng.normal(size=y.shape).astype(dtype)
    out_t.backward(torch.tensor(dout))
    for got, want in zip(conv2d_backward(dout, x, w, stride, padding), (xt.grad, wt.grad, bt.grad)): close(got, want, dtype)


def test_tanh_f32():
    "Within 5 ulp of tanh everywhere we looked, exactly +-1 far out, NaN stays NaN"
    x = np.concatenate([np.linspace(-12, 12, 20_001), np.geomspace(1e-38, 1, 2001), -np.geomspace(1e-38, 1, 201)]).astype(np.float32)
    ours = np.array([tanh_f32(v) for v in x], np.float32)
    exact = np.tanh(x.astype(np.float64))
    assert (np.abs(ours - exact) / np.spacing(np.abs(exact).astype(np.float32))).max() <= 5
    assert tanh_f32(np.float32(np.inf)) == 1 and tanh_f32(np.float32(-np.inf)) == -1 and tanh_f32(np.float32(30)) == 1
    assert np.isnan(tanh_f32(np.float32(np.nan)))


def lenet_pair(seed=0):
    model = lenet5(rng=seed)
    return model, fuse(model)


def test_fuse_lenet5():
    "fuse(lenet5()) shares its parameters (names, order, objects), computes the same, trains the same"
    model, fast = lenet_pair()
    assert [type(m).__name__ for m in fast.children()] == ['ConvActPool', 'ConvActPool', 'Conv2d', 'Tanh', 'Flatten',
                                                            'LinearAct', 'LinearAct']
    assert list(fast.state_dict()) == list(model.state_dict())
    assert all(p is q for p, q in zip(fast.parameters(), model.parameters()))
    x, y = np.random.default_rng(3).normal(size=(32, 1, 28, 28)).astype(np.float32), np.arange(32) % 10
    np.testing.assert_allclose(fast(x), model(x), atol=1e-5)
    loss, grads = CrossEntropyLoss(), []
    for net in (model, fast):
        net.zero_grad(); loss(net(x), y); net.backward(loss.backward())
        grads.append([p.grad.copy() for p in net.parameters()])
    for g, h in zip(*grads): np.testing.assert_allclose(h, g, atol=1e-5 * np.abs(g).max())
    assert fast.backward(loss.backward()) is None                     # input_grad=False
    with_dx = fuse(model, input_grad=True)
    loss(with_dx(x), y)
    assert with_dx.backward(loss.backward()).shape == x.shape
    assert fuse(model.eval()).training is False


def test_fuse_leaves_other_layers_and_models_alone():
    "Layers that do not fit a fused pattern stay as they are; strided convolutions and other pools are not fused"
    seq = Sequential(Conv2d(1, 2, 3, stride=2, rng=0), Tanh(), MaxPool2d(2, 2), Conv2d(2, 2, 3, rng=1), ReLU(),
                     MaxPool2d(3, 2), Flatten(), Linear(2, 3, rng=2), ReLU(), ReLU())
    fast = fuse(seq)
    assert [type(m).__name__ for m in fast.children()] == ['Conv2d', 'Tanh', 'MaxPool2d', 'Conv2d', 'ReLU', 'MaxPool2d',
                                                           'Flatten', 'LinearAct', 'ReLU']
    x = np.random.default_rng(4).normal(size=(3, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(fast(x), seq(x), atol=1e-6)
    with pytest.raises(TypeError, match='model must be a Sequential'): fuse(Linear(2, 2))


SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np, numba
    import dlcourse.kernels.fused as kf, dlcourse.kernels.conv as kc
    from dlcourse.zoo import lenet5
    from dlcourse.fused import fuse
    from dlcourse.losses import CrossEntropyLoss
    from dlcourse.optim import SGD
    model = fuse(lenet5(rng=0))
    loss_fn, opt = CrossEntropyLoss(), SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(1)
    losses = []
    for step in range(int(sys.argv[2])):
        x, y = rng.normal(size=(int(sys.argv[1]), 1, 28, 28)).astype(np.float32), rng.integers(0, 10, int(sys.argv[1]))
        losses.append(loss_fn(model(x), y)); opt.zero_grad(); model.backward(loss_fn.backward()); opt.step()
    stats = {name: (sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))
             for m in (kf, kc) for name, f in vars(m).items() if hasattr(f, 'stats') and f.signatures}
    json.dump(dict(losses=losses, weights={k: v.tolist() for k, v in model.state_dict().items()}, stats=stats,
                   threads=numba.get_num_threads(), jit_disabled=not hasattr(kf.conv_act_pool_forward, 'stats')), sys.stdout)
''')




def run_script(batch=8, steps=3, **env):
    res = subprocess.run([sys.executable, '-c', SCRIPT, str(batch), str(steps)], capture_output=True, text=True, timeout=900,
                         env=compiled_env(**env))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_training_is_bit_identical_across_runs_and_thread_counts(tmp_path):
    "Same seed -> the same weights to the last bit after three fused training steps, with 1 or 2 threads"
    runs = [run_script(33, NUMBA_NUM_THREADS=n, NUMBA_CACHE_DIR=str(tmp_path)) for n in ('1', '2', '2')]
    assert [r['threads'] for r in runs] == [1, 2, 2]
    for r in runs[1:]:
        assert r['losses'] == runs[0]['losses']
        for k, v in r['weights'].items(): assert np.array_equal(np.array(v), np.array(runs[0]['weights'][k])), k


def test_kernels_run_without_jit(tmp_path):
    "With NUMBA_DISABLE_JIT=1 the fused kernels run as plain (bounds-checked) Python and agree with the compiled ones"
    plain, compiled = run_script(steps=1, NUMBA_DISABLE_JIT='1'), run_script(steps=1, NUMBA_CACHE_DIR=str(tmp_path))
    assert plain['jit_disabled'] and not compiled['jit_disabled']
    np.testing.assert_allclose(plain['losses'], compiled['losses'], rtol=1e-5)
    for k, v in plain['weights'].items(): np.testing.assert_allclose(v, compiled['weights'][k], rtol=1e-4, atol=1e-6)


def test_kernels_load_from_the_cache(tmp_path):
    "A second process loads every kernel of a fused training step from Numba's on-disk cache instead of compiling it"
    cache = dict(NUMBA_CACHE_DIR=str(tmp_path))
    first = run_script(**cache)['stats']
    assert any(misses > 0 for hits, misses in first.values())
    for name, (hits, misses) in run_script(**cache)['stats'].items():
        assert misses == 0 and hits > 0, f"{name} was compiled again (cache hits {hits}, misses {misses})"
