"""Fusion below the layer API (lesson 08b_speed): a Sequential computes a stride-1 convolution, its activation and 2x2
pooling as one fused step, against PyTorch and against the same layers unfused; the fused step checks what the layers
check; the small matrix products of Linear and gemm_nt; the fully connected route of Conv2d; tanh_f32; bit-identical
results for a fixed seed, also across thread counts; the kernels without JIT and from the cache. The float64 gradient
checks are in GRAD_CASES.
"""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, strategies as st

from conftest import TOL, compiled_env
from dlcourse.activations import ACTIVATIONS, ReLU, Tanh
from dlcourse.conv import Conv2d, conv2d, conv2d_backward
from dlcourse.core import Sequential
from dlcourse.engine.fusion import ConvActPool, fusion
from dlcourse.kernels.act import tanh_f32
from dlcourse.kernels.conv import gemm_nt
from dlcourse.layers import Flatten, Linear
from dlcourse.losses import CrossEntropyLoss
from dlcourse.pool import AvgPool2d, MaxPool2d
from dlcourse.zoo import lenet5

POOL = {'max': MaxPool2d, 'avg': AvgPool2d}
FUSABLE = ['tanh', 'relu', 'sigmoid', 'leaky_relu', 'elu', 'softplus']   # every activation of the registry fuses
TORCH_ACT = {'tanh': 'Tanh', 'relu': 'ReLU', 'sigmoid': 'Sigmoid', 'leaky_relu': 'LeakyReLU', 'elu': 'ELU', 'softplus': 'Softplus'}


def _normal(seed, *shape):
    "Normal values from a seed of their own: a case gets the same input whichever test builds it first"
    return np.random.default_rng(seed).normal(size=shape)


def block(conv, act, pool):
    "Sequential(conv, activation, pooling) as the user writes it: fused when its forward runs"
    return Sequential(conv, ACTIVATIONS[act].layer(), POOL[pool](2, 2))


GRAD_CASES = {
    'fused-tanh-max': lambda: (block(Conv2d(2, 3, 3, padding=1, rng=1), 'tanh', 'max'), _normal(10, 2, 2, 6, 7), None),
    'fused-sigmoid-avg': lambda: (block(Conv2d(2, 3, (2, 3), rng=2), 'sigmoid', 'avg'), _normal(11, 2, 2, 7, 6), None),
    'fused-elu-nobias': lambda: (block(Conv2d(1, 2, 3, bias=False, rng=3), 'elu', 'max'), _normal(12, 2, 1, 6, 6), None),
}


def torch_dtype(torch, dtype): return getattr(torch, np.dtype(dtype).name)


def close(got, want, dtype):
    want = want.detach().numpy() if hasattr(want, 'detach') else want
    scale = float(np.abs(want).max(initial=0)) or 1.0
    np.testing.assert_allclose(got / scale, want / scale, rtol=0, atol=100 * TOL[dtype]['rtol'])


@given(N=st.integers(0, 3), C=st.integers(1, 3), K=st.integers(1, 5), H=st.integers(2, 11), W=st.integers(2, 11),
       kh=st.integers(1, 4), kw=st.integers(1, 4), P=st.integers(0, 2), act=st.sampled_from(FUSABLE),
       pool=st.sampled_from(['max', 'avg']), bias=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_fused_block_matches_torch(torch, N, C, K, H, W, kh, kw, P, act, pool, bias, dtype, seed):
    "Conv2d, activation, 2x2 pooling in a Sequential (fused where the output is at least 2x2) against torch, all gradients"
    if H + 2 * P < kh or W + 2 * P < kw: return                          # the filter does not fit: tested in test_conv
    if H + 2 * P - kh + 1 < 2 or W + 2 * P - kw + 1 < 2: return           # no 2x2 window fits: tested below
    rng = np.random.default_rng(seed)
    conv = Conv2d(C, K, (kh, kw), padding=P, bias=bias, dtype=dtype, rng=seed)
    seq, nn = block(conv, act, pool), torch.nn
    ref = nn.Sequential(nn.Conv2d(C, K, (kh, kw), padding=P, bias=bias, dtype=torch_dtype(torch, dtype)),
                        getattr(nn, TORCH_ACT[act])(), (nn.MaxPool2d if pool == 'max' else nn.AvgPool2d)(2, 2))
    ref[0].load_state_dict({k: torch.tensor(v) for k, v in conv.state_dict().items()})
    x = rng.normal(size=(N, C, H, W)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    out_t = ref(xt)
    y = seq(x)
    assert [type(s) for s in seq._steps] == [ConvActPool]
    assert y.dtype == dtype and y.shape == tuple(out_t.shape)
    close(y, out_t, dtype)
    dout = rng.normal(size=y.shape).astype(dtype)
    out_t.backward(torch.tensor(dout))
    close(seq.backward(dout), xt.grad, dtype)
    close(conv.weight.grad, ref[0].weight.grad, dtype)
    if bias: close(conv.bias.grad, ref[0].bias.grad, dtype)
    conv.zero_grad()                                                      # as a network's first step: no dE/dx,
    assert seq.backward_params(dout) is None                              # the same gradients
    close(conv.weight.grad, ref[0].weight.grad, dtype)
    if bias: close(conv.bias.grad, ref[0].bias.grad, dtype)


@pytest.mark.parametrize('act', FUSABLE)
@pytest.mark.parametrize('pool', ['max', 'avg'])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_fused_block_matches_the_layers(act, pool, dtype):
    "The fused step computes what Conv2d, the activation and the pooling layer compute one by one, LeNet-5's shapes, accumulating"
    rng = np.random.default_rng(1)
    conv = Conv2d(6, 16, 5, dtype=dtype, rng=1)
    seq = block(conv, act, pool)
    x = rng.normal(size=(8, 6, 14, 14)).astype(dtype)
    dout = rng.normal(size=(8, 16, 5, 5)).astype(dtype)
    results = []
    for fused in (True, False):
        with fusion(fused):
            conv.zero_grad(); y = seq(x); dx = seq.backward(dout); seq(x); seq.backward(dout)
            assert type(seq._steps[0]) is (ConvActPool if fused else Conv2d)
            results.append((y, dx, [p.grad.copy() for p in conv.parameters()]))
    (y, dx, grads), (y_ref, dx_ref, grads_ref) = results
    eps = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(y, y_ref, atol=eps)
    np.testing.assert_allclose(dx, dx_ref, atol=10 * eps)
    for g, h in zip(grads, grads_ref): np.testing.assert_allclose(g, h, atol=100 * eps, rtol=10 * eps)


def test_fused_step_checks_what_the_layers_check():
    "Input, weight, bias and gradient arrays reach the fused kernels only after the checks of Conv2d.forward and backward"
    conv = Conv2d(3, 4, 3, padding=1, rng=0)
    seq = block(conv, 'relu', 'avg')
    y = seq(np.ones((2, 3, 8, 8), np.float32))
    assert y.shape == (2, 4, 4, 4) and seq.backward(np.ones_like(y)).shape == (2, 3, 8, 8)
    assert repr(seq._steps[0]) == 'ConvActPool(Conv2d -> ReLU -> AvgPool2d)'
    assert list(seq.state_dict()) == ['0.weight', '0.bias']
    def with_weight(data): c = Conv2d(3, 4, 3, rng=0); c.weight.data = data; return block(c, 'tanh', 'max')
    def with_grad(grad):
        c = Conv2d(3, 4, 3, rng=0); s = block(c, 'tanh', 'max'); out = s(np.ones((2, 3, 8, 8), np.float32))
        c.weight.grad = grad
        return lambda: s.backward(np.ones_like(out))
    for call, exc, text in [
        (lambda: seq(np.ones((2, 2, 8, 8), np.float32)), ValueError, 'x must have shape (N, 3, H, W)'),
        (lambda: seq(np.ones((2, 3, 8, 8))), TypeError, 'x has dtype float64, expected float32'),
        (lambda: with_weight(np.ones((4, 3, 3), np.float32))(np.ones((1, 3, 8, 8), np.float32)), ValueError, 'weight must have shape (4, 3, 3, 3) (4-D), got (4, 3, 3)'),
        (lambda: with_weight(np.ones((4, 2, 3, 3), np.float32))(np.ones((1, 3, 8, 8), np.float32)), ValueError, 'weight must have shape (4, 3, 3, 3) (4-D), got (4, 2, 3, 3)'),
        (lambda: with_weight(np.ones((4, 3, 30, 3), np.float32))(np.ones((1, 3, 8, 8), np.float32)), ValueError, 'weight must have shape (4, 3, 3, 3) (4-D), got (4, 3, 30, 3)'),
        (lambda: with_weight(np.ones((4, 3, 3, 3)))(np.ones((1, 3, 8, 8), np.float32)), TypeError, 'x has dtype float32, expected float64'),
        (with_grad(np.zeros((4, 3, 3, 2), np.float32)), ValueError, 'weight.grad must be a writable C-contiguous array of shape (4, 3, 3, 3)'),
        (with_grad(np.zeros((3, 3, 3, 4), np.float32).transpose(3, 2, 1, 0)), ValueError, 'weight.grad must be a writable C-contiguous'),
        (lambda: block(Conv2d(1, 1, 3), 'tanh', 'max')(np.ones((1, 1, 3, 3), np.float32)), ValueError, 'kernel_size 2 is larger than'),
        (lambda: block(Conv2d(1, 1, 3), 'tanh', 'max').backward(np.ones((1, 1, 1, 1), np.float32)), ValueError, 'before forward()'),
    ]:
        with pytest.raises(exc) as e: call()
        assert text in str(e.value), str(e.value)


def test_nan_propagates():
    "A NaN in the input shows up in every pooled output that reads it (max pooling takes NaN, as max_pool2d does)"
    x = np.zeros((1, 1, 8, 8), np.float32); x[0, 0, 3, 3] = np.nan
    conv = Conv2d(1, 2, 3, padding=1, rng=0)
    for pool in ('max', 'avg'):
        seq = block(conv, 'tanh', pool)
        y = seq(x)
        with fusion(False): ref = seq(x)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
        assert np.isnan(y).sum() == 2 * 4


@given(N=st.integers(0, 5), fin=st.integers(1, 12), fout=st.integers(1, 12), bias=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16), blas=st.booleans())
def test_linear_matches_torch(torch, N, fin, fout, bias, dtype, seed, blas):
    "Linear's products in the course's kernel (small) and in BLAS (large), against torch"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr('dlcourse.kernels.config.BLAS_MIN_MACS', 0 if blas else 1 << 40)
        linear_against_torch(torch, N, fin, fout, bias, dtype, seed)


def linear_against_torch(torch, N, fin, fout, bias, dtype, seed):
    rng = np.random.default_rng(seed)
    lin, nn = Linear(fin, fout, bias=bias, dtype=dtype, rng=seed), torch.nn
    ref = nn.Linear(fin, fout, bias=bias, dtype=torch_dtype(torch, dtype))
    ref.load_state_dict({k: torch.tensor(v) for k, v in lin.state_dict().items()})
    x, dout = rng.normal(size=(N, fin)).astype(dtype), rng.normal(size=(N, fout)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    out_t = ref(xt)
    out_t.backward(torch.tensor(dout))
    close(lin(x), out_t, dtype)
    close(lin.backward(dout), xt.grad, dtype)
    close(lin.weight.grad, ref.weight.grad, dtype)
    if bias: close(lin.bias.grad, ref.bias.grad, dtype)
    lin.zero_grad()
    assert lin.backward_params(dout) is None                              # a first layer: no dE/dx, the same gradients
    close(lin.weight.grad, ref.weight.grad, dtype)
    if bias: close(lin.bias.grad, ref.bias.grad, dtype)


def test_linear_checks_its_parameters():
    "A weight, bias or gradient replaced by one of the wrong shape is refused before a kernel sees it"
    for attr, value, text in [('weight.data', np.ones((3, 4), np.float32), 'weight must have shape (3, 5)'),
                              ('weight.data', np.ones(15, np.float32), 'weight must have shape (3, 5)'),
                              ('bias.data', np.ones(1, np.float32), 'bias must have shape (3,)'),
                              ('weight.grad', np.ones((3, 4), np.float32), 'weight.grad must be a writable C-contiguous')]:
        lin = Linear(5, 3, rng=0)
        owner, name = attr.split('.')
        x = np.ones((2, 5), np.float32)
        if name == 'grad': lin(x)
        setattr(getattr(lin, owner), name, value)
        with pytest.raises(ValueError, match=text.replace('(', r'\(').replace(')', r'\)')):
            lin.backward(np.ones((2, 3), np.float32)) if name == 'grad' else lin(x)


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


def test_lenet5_fuses_below_the_api():
    "lenet5() fuses C1 and C3 with their tanh and pooling by itself: same results as layer by layer, the same parameters"
    model = lenet5(rng=0)
    x, y = np.random.default_rng(3).normal(size=(32, 1, 28, 28)).astype(np.float32), np.arange(32) % 10
    loss, results = CrossEntropyLoss(), []
    for fused in (True, False):
        with fusion(fused):
            model.zero_grad(); out = model(x); loss(out, y); dx = model.backward(loss.backward())
            results.append((out, dx, [p.grad.copy() for p in model.parameters()], [type(s).__name__ for s in model._steps]))
    (out, dx, grads, steps), (out0, dx0, grads0, steps0) = results
    assert steps == ['ConvActPool', 'ConvActPool', 'Conv2d', 'Tanh', 'Flatten', 'Linear', 'Tanh', 'Linear']
    assert steps0 == [type(m).__name__ for m in model.children()]
    np.testing.assert_allclose(out, out0, atol=1e-5)
    np.testing.assert_allclose(dx, dx0, atol=1e-5 * np.abs(dx0).max())
    for g, h in zip(grads, grads0): np.testing.assert_allclose(g, h, atol=1e-5 * np.abs(h).max())


def test_fusion_respects_hooks_and_other_layers():
    "Layers that do not fit a fused pattern run as they are; a hook on a layer keeps it (and its block) unfused"
    seq = Sequential(Conv2d(1, 2, 3, stride=2, rng=0), Tanh(), MaxPool2d(2, 2), Conv2d(2, 2, 3, rng=1), ReLU(),
                     MaxPool2d(3, 2), Flatten(), Linear(2, 3, rng=2), ReLU(), ReLU())
    x = np.random.default_rng(4).normal(size=(3, 1, 28, 28)).astype(np.float32)
    seq(x)
    assert [type(s) for s in seq._steps] == [type(m) for m in seq.children()]
    model, seen = lenet5(rng=0), []
    handle = model.act3.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(x)
    assert [type(s).__name__ for s in model._steps][:4] == ['ConvActPool', 'Conv2d', 'Tanh', 'MaxPool2d']
    assert seen == [(3, 16, 10, 10)]
    handle.remove(); model(x)
    assert [type(s).__name__ for s in model._steps][:2] == ['ConvActPool', 'ConvActPool']


SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np, numba
    import dlcourse.kernels.fused as kf, dlcourse.kernels.conv as kc, dlcourse.kernels.act as ka
    from dlcourse.zoo import lenet5
    from dlcourse.losses import CrossEntropyLoss
    from dlcourse.optim import SGD
    model = lenet5(rng=0)
    loss_fn, opt = CrossEntropyLoss(), SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(1)
    losses = []
    for step in range(int(sys.argv[2])):
        x, y = rng.normal(size=(int(sys.argv[1]), 1, 28, 28)).astype(np.float32), rng.integers(0, 10, int(sys.argv[1]))
        losses.append(loss_fn(model(x), y)); opt.zero_grad(); model.backward(loss_fn.backward()); opt.step()
    stats = {name: (sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))
             for m in (kf, kc, ka) for name, f in vars(m).items() if hasattr(f, 'stats') and f.signatures}
    json.dump(dict(losses=losses, weights={k: v.tolist() for k, v in model.state_dict().items()}, stats=stats,
                   threads=numba.get_num_threads(), jit_disabled=not hasattr(kf.conv_act_pool_forward, 'stats')), sys.stdout)
''')




def run_script(batch=8, steps=3, **env):
    res = subprocess.run([sys.executable, '-c', SCRIPT, str(batch), str(steps)], capture_output=True, text=True, timeout=900,
                         env=compiled_env(**env))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_training_is_bit_identical_across_runs_and_thread_counts(tmp_path):
    "Same seed -> the same weights to the last bit after three training steps of LeNet-5, with 1 or 2 threads"
    runs = [run_script(33, NUMBA_NUM_THREADS=n, NUMBA_CACHE_DIR=str(tmp_path)) for n in ('1', '2', '2')]
    assert [r['threads'] for r in runs] == [1, 2, 2]
    for r in runs[1:]:
        assert r['losses'] == runs[0]['losses']
        for k, v in r['weights'].items(): assert np.array_equal(np.array(v), np.array(runs[0]['weights'][k])), k


def test_kernels_run_without_jit(tmp_path):
    "With NUMBA_DISABLE_JIT=1 the kernels run as plain (bounds-checked) Python and agree with the compiled ones"
    plain, compiled = run_script(steps=1, NUMBA_DISABLE_JIT='1'), run_script(steps=1, NUMBA_CACHE_DIR=str(tmp_path))
    assert plain['jit_disabled'] and not compiled['jit_disabled']
    np.testing.assert_allclose(plain['losses'], compiled['losses'], rtol=1e-5)
    for k, v in plain['weights'].items(): np.testing.assert_allclose(v, compiled['weights'][k], rtol=1e-4, atol=1e-6)


def test_kernels_load_from_the_cache(tmp_path):
    "A second process loads every kernel of a LeNet-5 training step from Numba's on-disk cache instead of compiling it"
    cache = dict(NUMBA_CACHE_DIR=str(tmp_path), DLCOURSE_PREBUILT='0')    # Numba's own cache, not the shipped code
    first = run_script(**cache)['stats']
    assert any(misses > 0 for hits, misses in first.values())
    for name, (hits, misses) in run_script(**cache)['stats'].items():
        assert misses == 0 and hits > 0, f"{name} was compiled again (cache hits {hits}, misses {misses})"
