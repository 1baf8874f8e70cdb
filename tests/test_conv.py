"""Convolution (lesson 03): PyTorch oracle over random shapes, both kernel families, the layer, bad input, the kernels
without JIT and from the cache, and the float64 gradient checks (GRAD_CASES, collected by test_gradcheck.py).

Oracle tolerances: float32 rtol 1e-4, float64 rtol 1e-10. Every compared entry is a sum of products, and any two
summation orders may differ by a rounding error proportional to the sum of the absolute values of the terms, not to the
result (which can cancel to almost nothing). So the error is measured relative to that scale: the largest entry of the
same computation on |x|, |w|, |b| and |dout| (computed by PyTorch in float64), which bounds the largest entry of the result.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from conftest import compiled_env, record_error
import dlcourse.engine.conv as engine
from dlcourse.kernels import config
from dlcourse.conv import Conv2d, conv2d, conv2d_backward, conv_output_size, conv_remainder
from dlcourse.core import manual_seed

RTOL = {np.float32: 1e-4, np.float64: 1e-10}


def _normal(seed, *shape):
    "Normal values from a seed of their own: a case gets the same input whichever test builds it first"
    return np.random.default_rng(seed).normal(size=shape)


GRAD_CASES = {
    'Conv2d': lambda: (Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 2), rng=1), _normal(10, 2, 3, 7, 6), None),
    'Conv2d-nobias': lambda: (Conv2d(2, 3, 3, stride=2, bias=False, rng=2), _normal(11, 2, 2, 7, 8), None),
    'Conv2d-one-channel': lambda: (Conv2d(1, 3, (2, 3), padding=1, rng=3), _normal(12, 3, 1, 5, 4), None),
    'Conv2d-floored': lambda: (Conv2d(2, 2, 3, stride=3, rng=4), _normal(13, 1, 2, 8, 7), None),
}


def close(name, got, want, dtype, scale=None):
    "Assert max|got - want| <= rtol * scale (default scale: max|want|); the largest errors are reported after the run"
    want = np.asarray(want.detach().numpy() if hasattr(want, 'detach') else want)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    scale = float(np.abs(want).max(initial=0) if scale is None else scale) or 1.0
    err = float(np.abs(got.astype(np.float64) - want).max(initial=0)) / scale
    record_error(f"conv {np.dtype(dtype).name} {name}", err, RTOL[dtype])
    assert err <= RTOL[dtype], f"{name}: relative error {err:.2e} > {RTOL[dtype]:.0e}"


@st.composite
def conv_cases(draw):
    "Random convolution shapes: strides 1-3, paddings 0-3, filters from 1x1 up to the whole padded input, non-square"
    N, C, K = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    H, W = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    kh, kw = draw(st.integers(1, H + 2 * ph)), draw(st.integers(1, W + 2 * pw))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return dict(x=(N, C, H, W), w=(K, C, kh, kw), stride=(sh, sw), padding=(ph, pw))


def torch_conv(torch, x, w, b, stride, padding, dout):
    "Output and gradients (out, dx, dw, db) from torch.nn.functional.conv2d, and the scale of each (see the docstring)"
    def run(x, w, b, dout):
        xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        bt = None if b is None else torch.tensor(b, requires_grad=True)
        out = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=padding)
        out.backward(torch.tensor(dout))
        return out, xt.grad, wt.grad, None if b is None else bt.grad
    absolute = run(*(None if a is None else np.abs(a).astype(np.float64) for a in (x, w, b, dout)))
    scales = [None if a is None else float(a.detach().abs().max()) if a.numel() else 0.0 for a in absolute]
    return run(x, w, b, dout), scales


def random_case(case, dtype, seed, bias=True):
    rng = np.random.default_rng(seed)
    x, w = rng.normal(size=case['x']).astype(dtype), rng.normal(size=case['w']).astype(dtype)
    b = rng.normal(size=case['w'][0]).astype(dtype) if bias else None
    out_shape = (case['x'][0], case['w'][0], *(conv_output_size(I, F, S, P, floor=True) for I, F, S, P in
                                                zip(case['x'][2:], case['w'][2:], case['stride'], case['padding'])))
    return x, w, b, rng.normal(size=out_shape).astype(dtype)


@pytest.fixture(params=['auto', 'auto-pointwise-batch', 'direct', 'direct-plain', 'direct-wide-rows', 'im2col', 'im2col-chunked',
                        'im2col-per-image', 'im2col-per-image-chunked', 'im2col-channels-last',
                        'im2col-channels-last-chunked', 'im2col-channels-last-parts', 'register-tiles',
                        'register-tiles-chunked'])
def method(request, monkeypatch):
    """Run a test with the automatic choice of kernels (1x1 filters without padding: pointwise, one GEMM per image for
    these few channels, or one for the batch in 'auto-pointwise-batch'), or force one family (direct kernels only run
    with stride 1; 'direct' computes dE/dx of every layer with "same" padding as a forward convolution of the padded
    gradient, 'direct-wide-rows' never does; float32 runs the direct kernels with register tiles, but in 'direct-plain'):
    im2col with one GEMM for the batch, one image per chunk, one GEMM per
    image (bias inside it), or its patches taken from a channels-last copy of the input (for the batch or one image per
    chunk, or in parts of one image each inside the batch's patch matrix), or the register-tile kernels (float32 layers:
    dE/dx from the flipped filters with stride 1 and a padding below the filter's size, from patch gradients otherwise;
    float64 goes to im2col), their filter gradients summed over the whole batch at once or one image per chunk in three
    slices, the patch gradients in parts of one image"""
    if request.param.startswith('direct'):
        monkeypatch.setattr(config, 'FULL_CORRELATION_MIN_C', 10**9 if request.param == 'direct-wide-rows' else 1)
        monkeypatch.setattr(engine, 'use_direct_tiles', lambda dtype: dtype == np.float32 and request.param != 'direct-plain')
    if request.param == 'auto-pointwise-batch': monkeypatch.setattr(config, 'POINTWISE_BATCH_MIN_C', 1)
    elif request.param != 'auto':                     # a 1x1 filter without padding runs pointwise only in 'auto'
        monkeypatch.setattr(engine, 'use_direct', lambda *a: request.param.startswith('direct'))
        monkeypatch.setattr(engine, 'use_pointwise', lambda *a: False)
        monkeypatch.setattr(engine, 'use_channels_last', lambda *a: 'channels-last' in request.param)
        monkeypatch.setattr(engine, 'use_register_tiles', lambda *a: 'register-tiles' in request.param)
    if request.param.endswith('chunked'):                                            # one image per chunk
        monkeypatch.setattr(config, 'PATCH_BUDGET', 1)
        monkeypatch.setattr(config, 'REGISTER_TILE_CHUNK', 1)
        monkeypatch.setattr(config, 'REGISTER_TILE_SLICES', 3)
        monkeypatch.setattr(config, 'CHANNELS_LAST_PART', 1)
    if 'per-image' in request.param: monkeypatch.setattr(config, 'GEMM_PER_IMAGE', 1)        # one GEMM per image
    if request.param.endswith('parts'): monkeypatch.setattr(config, 'CHANNELS_LAST_PART', 1)  # one image per part
    return request.param


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])   # `method` patches the same way for every example
@given(case=conv_cases(), dtype=st.sampled_from([np.float32, np.float64]), bias=st.booleans(), seed=st.integers(0, 2**16))
@example(case=dict(x=(1, 1, 7, 7), w=(1, 1, 3, 3), stride=(3, 3), padding=(1, 1)), dtype=np.float64, bias=True, seed=0)
@example(case=dict(x=(1, 1, 5, 9), w=(2, 1, 5, 9), stride=(1, 1), padding=(0, 0)), dtype=np.float32, bias=True, seed=1)
@example(case=dict(x=(1, 2, 4, 3), w=(3, 2, 10, 9), stride=(3, 2), padding=(3, 3)), dtype=np.float32, bias=False, seed=2)
@example(case=dict(x=(2, 3, 9, 6), w=(4, 3, 1, 1), stride=(2, 3), padding=(0, 1)), dtype=np.float64, bias=True, seed=3)
@example(case=dict(x=(3, 4, 7, 6), w=(2, 4, 1, 1), stride=(2, 3), padding=(0, 0)), dtype=np.float32, bias=False, seed=4)
@example(case=dict(x=(2, 3, 5, 5), w=(4, 3, 1, 1), stride=(1, 1), padding=(0, 0)), dtype=np.float64, bias=True, seed=5)
@example(case=dict(x=(2, 9, 6, 5), w=(5, 9, 3, 5), stride=(1, 1), padding=(1, 2)), dtype=np.float32, bias=True, seed=6)
@example(case=dict(x=(3, 8, 4, 7), w=(3, 8, 3, 3), stride=(1, 1), padding=(1, 1)), dtype=np.float64, bias=False, seed=7)
@example(case=dict(x=(1, 1, 5, 1), w=(1, 1, 7, 1), stride=(1, 1), padding=(1, 0)), dtype=np.float32, bias=False, seed=0)
def test_conv2d_matches_torch(torch, method, case, dtype, bias, seed):
    x, w, b, dout = random_case(case, dtype, seed, bias)
    (out_t, dx_t, dw_t, db_t), scales = torch_conv(torch, x, w, b, case['stride'], case['padding'], dout)
    out = conv2d(x, w, b, case['stride'], case['padding'])
    assert out.dtype == dtype and out.flags.c_contiguous
    close('output', out, out_t, dtype, scales[0])
    dx, dw, db = conv2d_backward(dout, x, w, case['stride'], case['padding'])
    assert dx.dtype == dw.dtype == db.dtype == dtype
    close('dx', dx, dx_t, dtype, scales[1])
    close('dw', dw, dw_t, dtype, scales[2])
    if bias: close('db', db, db_t, dtype, scales[3])
    e = engine.ConvEngine()                                  # a network's first layer (backward_params): no dE/dx, and
    e.forward(x, w, b, case['stride'], case['padding'])      # the same gradients, on every path
    dw, db = np.zeros_like(w), np.zeros(len(w), dtype)
    assert e.backward(dout, dw, db if bias else None, input_grad=False) is None
    close('dw without dx', dw, dw_t, dtype, scales[2])
    if bias: close('db without dx', db, db_t, dtype, scales[3])


@given(case=conv_cases(), dtype=st.sampled_from([np.float32, np.float64]), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_layer_matches_torch(torch, case, dtype, bias, seed):
    "Conv2d against torch.nn.Conv2d with the same weights; two backward passes accumulate twice the gradient"
    x, _, _, dout = random_case(case, dtype, seed)
    K, C, kh, kw = case['w']
    S, P = case['stride'], case['padding']
    ours = Conv2d(C, K, (kh, kw), S, P, bias=bias, dtype=dtype, rng=seed)
    ref = torch.nn.Conv2d(C, K, (kh, kw), S, P, bias=bias, dtype=getattr(torch, np.dtype(dtype).name))
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    xt = torch.tensor(x, requires_grad=True)
    out_t = ref(xt)
    out_t.backward(torch.tensor(dout))
    b = ours.bias.data if bias else None
    scales = torch_conv(torch, x, ours.weight.data, b, S, P, dout)[1]
    close('layer output', ours(x), out_t, dtype, scales[0])
    close('layer dx', ours.backward(dout), xt.grad, dtype, scales[1])
    close('layer dw', ours.weight.grad, ref.weight.grad, dtype, scales[2])
    if bias: close('layer db', ours.bias.grad, ref.bias.grad, dtype, scales[3])
    ours.backward(dout)
    close('layer dw accumulated', ours.weight.grad, 2 * ref.weight.grad, dtype, 2 * scales[2])
    assert ours.floored == ours.floors(x.shape) == any(
        conv_remainder(I, F, s, p) for I, F, s, p in zip(x.shape[2:], (kh, kw), S, P))


@pytest.mark.parametrize('name,N,C,K,H,F,S,P', [('LeNet-5 conv1', 4, 1, 6, 32, 5, 1, 0), ('LeNet-5 conv2', 4, 6, 16, 14, 5, 1, 0),
                                               ('AlexNet conv1', 1, 3, 96, 227, 11, 4, 0), ('AlexNet conv2', 1, 96, 256, 27, 5, 1, 2),
                                               ('AlexNet conv3', 1, 256, 384, 13, 3, 1, 1),
                                               ('GoogLeNet 1x1', 8, 192, 64, 28, 1, 1, 0),
                                               ('ResNet shortcut 1x1/2', 2, 64, 128, 56, 1, 2, 0),
                                               ('ResNet 3x3/2', 2, 64, 128, 56, 3, 2, 1),
                                               ('small ResNet 3x3, 32 channels', 128, 32, 32, 7, 3, 1, 1),
                                               ('small ResNet 3x3, 16 channels', 8, 16, 16, 14, 3, 1, 1),
                                               ('small ResNet 3x3, 64 channels', 16, 64, 64, 4, 3, 1, 1),
                                               ('ResNet-18 3x3, 64 channels', 2, 64, 64, 16, 3, 1, 1)])
def test_benchmark_shapes_match_torch(torch, name, N, C, K, H, F, S, P):
    """The layers that bench/bench_conv.py times, in float32, checked once at full size (the small ResNet-18's 32-channel
    layer at its batch of 128: two parts of the channels-last patch matrix, or the register tiles' chunks and slices)"""
    layer = Conv2d(C, K, F, S, P, rng=0)
    ref = torch.nn.Conv2d(C, K, F, S, P)
    ref.load_state_dict({k: torch.tensor(v) for k, v in layer.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, C, H, H)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    out_t = ref(xt)
    dout = rng.normal(size=tuple(out_t.shape)).astype(np.float32)
    out_t.backward(torch.tensor(dout))
    close('bench output', layer(x), out_t, np.float32)
    close('bench dx', layer.backward(dout), xt.grad, np.float32)
    close('bench dw', layer.weight.grad, ref.weight.grad, np.float32)
    close('bench db', layer.bias.grad, ref.bias.grad, np.float32)


def test_init_like_torch():
    "U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, fan_in = C*kh*kw; reproducible with a seed"
    layer = Conv2d(8, 64, (3, 5), rng=0)
    k = 1 / np.sqrt(8 * 3 * 5)
    for p in (layer.weight.data, layer.bias.data):
        assert p.dtype == np.float32 and np.abs(p).max() <= k
    w = layer.weight.data
    assert w.shape == (64, 8, 3, 5) and layer.bias.shape == (64,)
    assert abs(w.std() - k / np.sqrt(3)) < 0.02 * k and abs(w.mean()) < 0.02 * k     # the moments of U(-k, k)
    np.testing.assert_array_equal(Conv2d(8, 64, (3, 5), rng=0).weight.data, w)
    manual_seed(1); a = Conv2d(2, 2, 2).weight.data
    manual_seed(1); np.testing.assert_array_equal(Conv2d(2, 2, 2).weight.data, a)
    assert Conv2d(2, 3, 1, bias=False).bias is None
    assert Conv2d(2, 3, 1, dtype=np.float64).weight.dtype == np.float64


def test_lecture_examples():
    assert conv_output_size(7, 3, 1) == 5 and conv_output_size(7, 3, 2) == 3
    with pytest.raises(ValueError, match=r'Passt nicht! \(I - F \+ 2P\)/S \+ 1 = \(7 - 3 \+ 2\*0\)/3 \+ 1 = 4/3 \+ 1'):
        conv_output_size(7, 3, 3)
    assert conv_output_size(7, 3, 3, P=1) == 3 and conv_output_size(32, 5, 1, 0) == 28
    y = Conv2d(3, 6, 5)(np.zeros((1, 3, 32, 32), np.float32))
    assert y.shape == (1, 6, 28, 28)
    assert sum(p.size for p in Conv2d(3, 6, 5).parameters()) == 456


def test_floor_is_recorded():
    layer = Conv2d(1, 1, 3, stride=3)
    assert layer.floored is None
    assert layer.output_shape((2, 1, 7, 9)) == (2, 1, 2, 3) and layer.floors((2, 1, 7, 9))
    layer(np.zeros((2, 1, 7, 9), np.float32))
    assert layer.floored is True
    layer(np.zeros((2, 1, 9, 9), np.float32))
    assert layer.floored is False
    assert Conv2d(1, 1, 3, stride=3, padding=1).floors((1, 1, 7, 7)) is False
    assert conv_remainder(7, 3, 3) == 1 and conv_remainder(224, 11, 4, 2) == 1


def test_astype_and_float64_layer():
    layer = Conv2d(2, 3, 3, rng=0)
    x = np.random.default_rng(0).normal(size=(2, 2, 6, 6))
    y32 = layer(x.astype(np.float32))
    layer.astype(np.float64)
    y64 = layer(x)
    assert y64.dtype == np.float64
    np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-5)
    assert layer.backward(np.ones_like(y64)).dtype == np.float64


def test_repeated_forward_reuses_buffers_correctly():
    "The engine reuses its buffers: outputs of earlier calls stay intact, shapes may change between calls"
    layer = Conv2d(3, 4, 3, padding=1, rng=0)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=s).astype(np.float32) for s in ((2, 3, 8, 8), (2, 3, 8, 8), (1, 3, 5, 7), (2, 3, 8, 8))]
    outs = [layer(x) for x in xs]
    for x, y in zip(xs, outs): np.testing.assert_allclose(y, conv2d(x, layer.weight.data, layer.bias.data, 1, 1), rtol=1e-6)
    dxs = [layer.backward(np.ones_like(outs[-1])) for _ in range(2)]
    np.testing.assert_array_equal(dxs[0], dxs[1])


f32 = lambda *shape: np.ones(shape, np.float32)

BAD = [
    ('channel mismatch', lambda: conv2d(f32(2, 3, 8, 8), f32(4, 2, 3, 3)), ValueError, 'x has 3 channels but w expects 2'),
    ('layer channel mismatch', lambda: Conv2d(3, 4, 3)(f32(2, 2, 8, 8)), ValueError, 'x must have shape (N, 3, H, W)'),
    ('kernel too tall', lambda: conv2d(f32(1, 1, 4, 8), f32(1, 1, 7, 3), padding=1), ValueError,
     "the filter does not fit: its height 7 is larger than the padded input's height 4 + 2*1 = 6"),
    ('kernel too wide', lambda: Conv2d(1, 1, (1, 9))(f32(1, 1, 4, 8)), ValueError, "its width 9 is larger than the padded input's width"),
    ('stride 0', lambda: conv2d(f32(1, 1, 4, 4), f32(1, 1, 2, 2), stride=0), ValueError, 'stride must be an integer >= 1'),
    ('stride negative', lambda: Conv2d(1, 1, 2, stride=(1, -1)), ValueError, 'stride must be an integer >= 1'),
    ('stride float', lambda: Conv2d(1, 1, 2, stride=1.5), ValueError, 'stride must be an integer >= 1'),
    ('padding negative', lambda: conv2d(f32(1, 1, 4, 4), f32(1, 1, 2, 2), padding=-1), ValueError, 'padding must be an integer >= 0'),
    ('layer padding negative', lambda: Conv2d(1, 1, 2, padding=(0, -2)), ValueError, 'padding must be an integer >= 0'),
    ('kernel_size 0', lambda: Conv2d(1, 1, 0), ValueError, 'kernel_size must be an integer >= 1'),
    ('kernel_size triple', lambda: Conv2d(1, 1, (2, 2, 2)), ValueError, 'kernel_size must be an integer >= 1 or a (height, width) pair'),
    ('in_channels 0', lambda: Conv2d(0, 1, 2), ValueError, 'in_channels must be a positive integer'),
    ('out_channels float', lambda: Conv2d(1, 2.0, 2), TypeError, 'out_channels must be a positive integer'),
    ('x 3-D', lambda: conv2d(f32(3, 8, 8), f32(4, 3, 3, 3)), ValueError, 'x must have shape (N, C, H, W) (4-D), got (3, 8, 8)'),
    ('layer x 3-D', lambda: Conv2d(3, 4, 3)(f32(3, 8, 8)), ValueError, 'use x[None] for one image'),
    ('x 5-D', lambda: conv2d(f32(1, 1, 3, 8, 8), f32(4, 3, 3, 3)), ValueError, 'x must have shape (N, C, H, W)'),
    ('w 3-D', lambda: conv2d(f32(2, 3, 8, 8), f32(3, 3, 3)), ValueError, 'w must have shape (K, C, kh, kw) (4-D)'),
    ('x int', lambda: conv2d(np.ones((1, 1, 4, 4), int), f32(1, 1, 2, 2)), TypeError, 'x must have dtype float32 or float64, got int64'),
    ('w int', lambda: conv2d(f32(1, 1, 4, 4), np.ones((1, 1, 2, 2), np.int32)), TypeError, 'w must have dtype float32 or float64'),
    ('layer x int', lambda: Conv2d(1, 1, 2)(np.ones((1, 1, 4, 4), np.uint8)), TypeError, 'x must have dtype float32 or float64'),
    ('x list', lambda: conv2d([[[[1.0]]]], f32(1, 1, 1, 1)), TypeError, 'x must be a numpy.ndarray'),
    ('x empty plane', lambda: conv2d(f32(1, 2, 0, 5), f32(3, 2, 1, 1)), ValueError, 'must not be empty (only N may be 0)'),
    ('w no filters', lambda: conv2d(f32(1, 2, 4, 4), f32(0, 2, 1, 1)), ValueError, 'must not be empty'),
    ('dtype mismatch', lambda: conv2d(f32(1, 1, 4, 4), np.ones((1, 1, 2, 2))), TypeError, 'w has dtype float64 but x has dtype float32'),
    ('layer dtype mismatch', lambda: Conv2d(1, 1, 2)(np.ones((1, 1, 4, 4))), TypeError, 'x has dtype float64, expected float32'),
    ('bias shape', lambda: conv2d(f32(1, 1, 4, 4), f32(3, 1, 2, 2), f32(2)), ValueError, 'b must have shape (3,) (1-D), got (2,)'),
    ('bias 2-D', lambda: conv2d(f32(1, 1, 4, 4), f32(3, 1, 2, 2), f32(3, 1)), ValueError, 'b must have shape (3,)'),
    ('bias dtype', lambda: conv2d(f32(1, 1, 4, 4), f32(3, 1, 2, 2), np.ones(3)), TypeError, 'b has dtype float64 but x has dtype float32'),
    ('bias int', lambda: conv2d(f32(1, 1, 4, 4), f32(3, 1, 2, 2), np.ones(3, int)), TypeError, 'b must have dtype float32 or float64'),
    ('layer dtype', lambda: Conv2d(1, 1, 2, dtype=np.int32), TypeError, 'dtype must be float32 or float64'),
    ('backward first', lambda: Conv2d(1, 1, 2).backward(f32(1, 1, 3, 3)), ValueError, 'backward() was called before forward()'),
    ('dout shape', lambda: used(Conv2d(1, 2, 2), f32(1, 1, 4, 4)).backward(f32(1, 2, 4, 4)), ValueError, 'dout must have shape (1, 2, 3, 3)'),
    ('dout dtype', lambda: used(Conv2d(1, 2, 2), f32(1, 1, 4, 4)).backward(np.ones((1, 2, 3, 3))), TypeError, 'dout has dtype float64'),
    ('functional dout shape', lambda: conv2d_backward(f32(1, 1, 2, 2), f32(1, 1, 4, 4), f32(1, 1, 2, 2)), ValueError,
     'dout must have shape (1, 1, 3, 3)'),
]


def used(module, x):
    module(x)
    return module


@pytest.mark.parametrize('desc,call,exc,fragment', BAD, ids=[c[0] for c in BAD])
def test_bad_input(desc, call, exc, fragment):
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value), f"message {str(info.value)!r} lacks {fragment!r}"


@pytest.mark.parametrize('method_', ['direct', 'im2col'])
def test_non_contiguous_inputs_work(method_, monkeypatch):
    "Transposed, strided and Fortran-ordered arrays give the same results as their contiguous copies"
    monkeypatch.setattr(engine, 'use_direct', lambda *a: method_ == 'direct')
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 9, 3)).transpose(0, 3, 1, 2)                  # channels-last memory
    w = np.asfortranarray(rng.normal(size=(4, 3, 3, 2)))
    b = rng.normal(size=8)[::2]                                               # strided
    want = conv2d(np.ascontiguousarray(x), np.ascontiguousarray(w), np.ascontiguousarray(b), 1, 1)
    np.testing.assert_array_equal(conv2d(x, w, b, 1, 1), want)
    np.testing.assert_array_equal(conv2d(x[:, :, ::-1][:, :, ::-1], w, b, 1, 1), want)
    layer = Conv2d(3, 4, (3, 2), 1, 1, dtype=np.float64)
    layer.load_state_dict({'weight': w, 'bias': b})
    np.testing.assert_array_equal(layer(x), want)
    dout = rng.normal(size=(4, 2, 9, 10)).transpose(1, 0, 2, 3)
    dx_ref = conv2d_backward(np.ascontiguousarray(dout), np.ascontiguousarray(x), np.ascontiguousarray(w), 1, 1)[0]
    np.testing.assert_array_equal(layer.backward(dout), dx_ref)


@pytest.mark.parametrize('N,C,H,W,kh,kw,sh,sw,ph,pw', [                    # output rows shorter than SHORT_ROWS:
    (1, 1, 5, 4, 3, 2, 1, 1, 0, 0), (2, 3, 6, 7, 3, 3, 2, 1, 1, 2), (5, 13, 4, 4, 3, 3, 1, 1, 1, 1),
    (4, 16, 7, 5, 2, 3, 1, 3, 2, 0), (3, 22, 9, 8, 5, 5, 3, 2, 0, 1), (2, 70, 4, 4, 3, 3, 1, 1, 1, 1),  # 70 channels
    (2, 3, 5, 40, 3, 2, 1, 1, 1, 2), (70, 1, 3, 17, 2, 2, 2, 1, 1, 0),    # long rows (70 planes: uneven blocks),
    (1, 3, 4, 50, 3, 3, 1, 3, 0, 2), (5, 13, 6, 15, 3, 3, 1, 1, 1, 1)])   # strided, and rows of SHORT_ROWS values
def test_kernels_pad_and_crop_each_plane_as_numpy_does(N, C, H, W, kh, kw, sh, sw, ph, pw):
    """im2col and col2im pad (and crop) each plane themselves: the same values as padding the whole batch with NumPy first
    (im2col: the windows of np.pad; col2im: every column added onto its window of a zero padded plane, then cropped), on
    long output rows (copied row by row) and short ones (channel by channel, through a table of offsets)"""
    from numpy.lib.stride_tricks import sliding_window_view
    from dlcourse.kernels.conv import PLANE_BLOCKS, SHORT_ROWS, col2im, im2col
    assert (PLANE_BLOCKS, SHORT_ROWS) == (64, 16)                      # the cases above straddle both
    rng = np.random.default_rng(N * C)
    x = rng.normal(size=(N, C, H, W))
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :OH, :OW]    # (N, C, OH, OW, kh, kw)
    want = win.transpose(1, 4, 5, 0, 2, 3).reshape(C * kh * kw, N * OH * OW)
    cols = np.full_like(want, np.nan)
    im2col(x, kh, kw, sh, sw, ph, pw, cols)
    np.testing.assert_array_equal(cols, want)
    dcols = rng.normal(size=want.shape)
    d6 = dcols.reshape(C, kh, kw, N, OH, OW)
    dxp = np.zeros_like(xp)
    for r in range(kh):
        for s_ in range(kw):
            dxp[:, :, r:r + sh * (OH - 1) + 1:sh, s_:s_ + sw * (OW - 1) + 1:sw] += d6[:, r, s_].transpose(1, 0, 2, 3)
    dx = np.full_like(x, np.nan)
    col2im(dcols, kh, kw, sh, sw, ph, pw, dx)
    np.testing.assert_allclose(dx, dxp[:, :, ph:ph + H, pw:pw + W], rtol=0, atol=1e-13 * np.abs(d6).sum(axis=(1, 2)).max())


@pytest.mark.parametrize('N,C,K,H,W,kh,kw,ph,pw', [
    (1, 1, 1, 5, 4, 3, 2, 0, 0), (3, 3, 5, 9, 8, 3, 2, 1, 2), (2, 9, 5, 6, 5, 3, 5, 1, 2),   # odd numbers of filters
    (5, 8, 8, 7, 7, 3, 3, 1, 1), (1, 16, 16, 14, 14, 3, 3, 1, 1), (9, 2, 4, 4, 11, 5, 3, 2, 1),    # 9 images, 8 slices
    (2, 3, 3, 4, 6, 1, 3, 0, 1)])                  # "same" padding without padding rows: the gap ends each plane
def test_direct_kernels_pad_each_image_as_numpy_does(N, C, K, H, W, kh, kw, ph, pw):
    """The direct kernels pad each image in a scratch array of their own: the same values as the windows of np.pad, for
    every split of the filter pairs into items (forward) and of the batch into slices (both gradients of "same"
    padding: dE/dx the same to the bit, dE/dw summed per slice); dE/dx is the forward kernel's convolution of the
    output gradient with the flipped filters, to the bit"""
    from numpy.lib.stride_tricks import sliding_window_view
    from dlcourse.kernels.conv import conv_direct_backward_same, conv_direct_forward
    rng = np.random.default_rng(N * C + K)
    x, w, b = rng.normal(size=(N, C, H, W)), rng.normal(size=(K, C, kh, kw)), rng.normal(size=K)
    OH, OW = H + 2 * ph - kh + 1, W + 2 * pw - kw + 1
    win = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))), (kh, kw), axis=(2, 3))  # (N, C, OH, OW, kh, kw)
    want = np.einsum('ncijrs,kcrs->nkij', win, w) + b[:, None, None]
    scale = np.einsum('ncijrs,kcrs->nkij', np.abs(win), np.abs(w)).max() + np.abs(b).max()
    outs = []
    for groups in range(1, (K + 1) // 2 + 1):
        out = np.full((N, K, OH, OW), np.nan)
        conv_direct_forward(x, ph, pw, w, b, groups, out)
        outs.append(out)
        np.testing.assert_array_equal(out, outs[0])
    np.testing.assert_allclose(outs[0], want, rtol=0, atol=1e-13 * scale)
    if (2 * ph + 1, 2 * pw + 1) != (kh, kw): return                        # "same" padding only below
    dout = rng.normal(size=(N, K, OH, OW))
    wflip = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    dx_fwd = np.full_like(x, np.nan)
    conv_direct_forward(dout, ph, pw, wflip, np.zeros(C), 1, dx_fwd)
    gwin = sliding_window_view(np.pad(dout, ((0, 0), (0, 0), (ph, ph), (pw, pw))), (kh, kw), axis=(2, 3))
    dx_want = np.einsum('nkijrs,ckrs->ncij', gwin, wflip)
    dw_want = np.einsum('ncijrs,nkij->kcrs', win, dout)
    dw_scale = np.einsum('ncijrs,nkij->kcrs', np.abs(win), np.abs(dout)).max()
    np.testing.assert_allclose(dx_fwd, dx_want, rtol=0, atol=1e-13 * np.einsum('nkijrs,ckrs->ncij', np.abs(gwin), np.abs(wflip)).max())
    for slices in sorted({1, 2, min(N, 8)}):
        parts, dx = np.full((slices, K, C, kh, kw), np.nan), np.full_like(x, np.nan)
        conv_direct_backward_same(dout, x, ph, pw, wflip, parts, dx)
        np.testing.assert_array_equal(dx, dx_fwd)
        np.testing.assert_allclose(parts.sum(0), dw_want, rtol=0, atol=1e-13 * dw_scale)


def tile_reference(x, w, sh, sw, ph, pw):
    "A convolution in float64 with NumPy (no bias), and the padded input channels last: the tile kernels' input"
    N, C, H, W = x.shape
    K, _, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]   # (N, C, OH, OW, kh, kw)
    return np.einsum('ncijrs,kcrs->nkij', win, w.astype(np.float64)), win, np.ascontiguousarray(xp.transpose(0, 2, 3, 1))


@pytest.mark.parametrize('N,C,K,H,W,kh,kw,sh,sw,ph,pw', [
    (1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0), (2, 3, 5, 6, 7, 3, 3, 1, 1, 1, 1), (3, 7, 16, 5, 4, 3, 2, 1, 1, 2, 1),
    (1, 16, 17, 4, 9, 1, 3, 1, 1, 0, 2), (5, 13, 33, 3, 3, 3, 3, 1, 1, 1, 1), (2, 6, 32, 7, 7, 5, 5, 1, 1, 2, 2),
    (4, 32, 32, 7, 7, 3, 3, 1, 1, 1, 1), (7, 12, 8, 2, 5, 2, 2, 1, 1, 1, 0), (3, 8, 16, 14, 14, 3, 3, 2, 2, 1, 1),
    (2, 5, 20, 9, 8, 3, 2, 3, 2, 0, 1), (1, 16, 32, 7, 6, 3, 3, 2, 1, 1, 1)])
def test_register_tile_kernels_match_numpy(N, C, K, H, W, kh, kw, sh, sw, ph, pw):
    """The register-tile kernels against NumPy in float64, with and without a stride: the forward step with its bias
    (filters rounded up to whole tiles of 16 with zeros, positions in tiles of 6 with a last partial tile), and the
    filter gradient summed over the
    slices, for chunks of 1, 2, 3, an image's and all output rows and 1 to N*OH slices (C not a multiple of 6: a last
    partial tile of channels).
    The float32 sums may differ from float64 by rounding: at most 1e-5 of the sum of the terms' absolute values"""
    from dlcourse.kernels.conv import conv_nhwc_forward, conv_nhwc_weight_grad
    rng = np.random.default_rng(N * 1000 + C * 10 + K)
    x, w, b = (rng.normal(size=s).astype(np.float32) for s in ((N, C, H, W), (K, C, kh, kw), (K,)))
    want, win, xt = tile_reference(x, w, sh, sw, ph, pw)
    want += b[:, None, None]
    Kp = -(-K // 16) * 16
    wt = np.zeros((kh, kw, C, Kp), np.float32); wt[..., :K] = w.transpose(2, 3, 1, 0)
    bt = np.zeros(Kp, np.float32); bt[:K] = b
    out = np.full(want.shape, np.nan, np.float32)
    conv_nhwc_forward(xt.astype(np.float32), wt.reshape(-1, Kp), bt, kh, kw, sh, sw, out)
    scale = np.einsum('ncijrs,kcrs->nkij', np.abs(win), np.abs(w)).max() + np.abs(b).max()
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-5 * scale)
    OH, OW = want.shape[2:]
    g = rng.normal(size=want.shape)
    gt = np.zeros((N, OH + 2, OW + 3, Kp), np.float32)                    # the gradient at an offset (1, 2) in a
    gt[:, 1:1 + OH, 2:2 + OW, :K] = g.transpose(0, 2, 3, 1)               # larger padded array, as backward pads it
    dw_want = np.einsum('ncijrs,nkij->krsc', win, g)                       # rows (r, s, c), as the kernel's
    dw_scale = np.einsum('ncijrs,nkij->krsc', np.abs(win), np.abs(g)).max()
    for chunk, slices in ((1, 1), (2, 3), (OH, 4), (10**6, 2), (3, N * OH)):     # chunks and slices of output rows
        parts = np.full((max(1, min(N * OH, slices)), kh * kw * C, Kp), np.nan, np.float32)
        conv_nhwc_weight_grad(xt.astype(np.float32), gt, 1, 2, kh, kw, sh, sw, OH, OW, chunk, parts)
        dw = parts.sum(0, dtype=np.float64)
        np.testing.assert_allclose(dw[:, :K].reshape(kh, kw, C, K).transpose(3, 0, 1, 2), dw_want, rtol=0, atol=1e-5 * dw_scale)
        assert not dw[:, K:].any(), 'the filters beyond K have zero gradients (their output gradient is zero)'


@pytest.mark.parametrize('N,C,K,H,W,kh,kw,ph,pw', [
    (1, 1, 1, 1, 1, 1, 1, 0, 0), (2, 8, 8, 28, 28, 3, 3, 1, 1), (3, 1, 6, 12, 9, 5, 5, 2, 2), (2, 6, 16, 10, 7, 5, 5, 0, 0),
    (5, 3, 5, 4, 6, 3, 3, 1, 1), (1, 9, 7, 6, 5, 3, 1, 1, 0), (4, 2, 13, 3, 30, 1, 3, 0, 1)])
def test_direct_tile_kernels_match_numpy(N, C, K, H, W, kh, kw, ph, pw):
    """The direct kernels with register tiles against NumPy in float64: the forward step with its bias (four filters a
    tile, K not a multiple of 4: a last partial tile; an image's groups of four filters in one or more parts), and, for
    "same" padding, both gradients from the backward kernel
    (two taps a tile of the filter gradient) for 1, 2 and N slices. The float32 sums may differ from float64 by rounding:
    at most 1e-5 of the sum of the terms' absolute values"""
    from dlcourse.kernels.conv import conv_direct_tiles_backward_same, conv_direct_tiles_forward
    rng = np.random.default_rng(N * 1000 + C * 10 + K)
    x, w, b = (rng.normal(size=s).astype(np.float32) for s in ((N, C, H, W), (K, C, kh, kw), (K,)))
    want, win, _ = tile_reference(x, w, 1, 1, ph, pw)
    K4 = -(-K // 4) * 4
    wf = np.zeros((C * kh * kw, K4), np.float32); wf[:, :K] = w.reshape(K, -1).T
    scale = np.einsum('ncijrs,kcrs->nkij', np.abs(win), np.abs(w)).max() + np.abs(b).max()
    for groups in sorted({1, 2, K4 // 4}):                                 # an image's filter groups in 1 to K4/4 parts
        out = np.full(want.shape, np.nan, np.float32)
        conv_direct_tiles_forward(x, ph, pw, wf, kh, kw, b, groups, out)
        np.testing.assert_allclose(out, want + b[:, None, None], rtol=0, atol=1e-5 * scale)
    if 2 * ph + 1 != kh or 2 * pw + 1 != kw: return                      # the backward kernel: "same" padding only
    g = rng.normal(size=want.shape).astype(np.float32)
    dw_want = np.einsum('ncijrs,nkij->kcrs', win, g)
    gwin = np.lib.stride_tricks.sliding_window_view(np.pad(g.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw))),
                                                    (kh, kw), axis=(2, 3))
    wflip = w[:, :, ::-1, ::-1].astype(np.float64)                         # dE/dx: the full correlation
    dx_want = np.einsum('nkijrs,kcrs->ncij', gwin, wflip)
    C4 = -(-C // 4) * 4
    wft = np.zeros((K * kh * kw, C4), np.float32); wft[:, :C] = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(C, -1).T
    for slices in sorted({1, 2, N}):
        parts, dx = np.full((slices, K, C, kh, kw), np.nan, np.float32), np.full(x.shape, np.nan, np.float32)
        conv_direct_tiles_backward_same(g, x, ph, pw, wft, parts, dx)
        np.testing.assert_allclose(dx, dx_want, rtol=0,
                                   atol=1e-5 * np.einsum('nkijrs,kcrs->ncij', np.abs(gwin), np.abs(wflip)).max())
        np.testing.assert_allclose(parts.sum(0, dtype=np.float64), dw_want, rtol=0,
                                   atol=1e-5 * np.einsum('ncijrs,nkij->kcrs', np.abs(win), np.abs(g)).max())


def test_vector_operations_compiled_and_in_python():
    "The register tiles' vector operations give NumPy's results compiled and as plain Python (NUMBA_DISABLE_JIT=1)"
    from numba import njit
    from dlcourse.kernels import simd
    def kernel(a, out):
        v = simd.vfma(simd.vload(a, 3), simd.vbroadcast(a, 1), simd.vzero())
        v = simd.vadd(v, simd.vload(a, 8))
        simd.vstore(out, 2, v)
        out[0] = simd.vget(v, 7)
        out[1] = simd.vsum(simd.vload(a, 12))
    a = np.arange(20, dtype=np.float32) / 4
    want = np.zeros(12, np.float32)
    want[2:10] = a[3:11] * a[1] + a[8:16]
    want[0], want[1] = want[9], a[12:20].sum()
    for f in (kernel, njit(kernel)):
        out = np.zeros(12, np.float32)
        f(a, out)
        np.testing.assert_array_equal(out, want)
    v = simd.vload(a, 0)                                    # as plain Python an index outside raises, as compiled
    for bad in (lambda: simd.vload(a, 13), lambda: simd.vload(a, -1), lambda: simd.vbroadcast(a, 20),
                lambda: simd.vbroadcast(a, -1), lambda: simd.vstore(a, 13, v), lambda: simd.vget(v, 8),
                lambda: simd.vget(v, -1)):
        with pytest.raises(IndexError, match='out of bounds'): bad()
    simd.vstore(a, 12, v)                                   # the last eight values: in bounds
    np.testing.assert_array_equal(a[12:], a[:8])


@pytest.mark.parametrize('N,size,budget', [(128, 49 * 288, 1 << 20), (128, 16 * 576, 1 << 20), (8, 256 * 576, 1 << 20),
                                           (5, 10, 1), (7, 3, 10), (1, 10**6, 1), (0, 5, 1), (3, 1, 10**9), (3, 2, 3),
                                           (100, 7, 50)])
def test_cache_parts_cover_the_batch_in_nearly_equal_parts(monkeypatch, N, size, budget):
    "The channels-last parts: every image once, in order, each within the budget (or one image), sizes differ by <= 1"
    monkeypatch.setattr(config, 'CHANNELS_LAST_PART', budget)
    parts = engine.cache_parts(N, size)
    assert [i for a, z in parts for i in range(a, z)] == list(range(N))
    sizes = [z - a for a, z in parts]
    assert all(s >= 1 for s in sizes) and (max(sizes) - min(sizes) <= 1 if sizes else N == 0)
    assert all(s * size <= budget or s == 1 for s in sizes)
    assert len(parts) == -(-N // max(1, budget // size))          # as few as the budget allows
    if (N, size, budget) == (128, 49 * 288, 1 << 20): assert sizes == [64, 64]     # the small ResNet-18's 7x7 layers


def test_direct_groups_give_every_thread_work():
    "A small batch splits its filter pairs into groups so that every thread has items; a large one keeps one per image"
    import numba
    T = numba.get_num_threads()
    assert engine.direct_groups(128, 16) == 1 and engine.direct_groups(0, 4) >= 1
    for N, K in ((1, 16), (1, 3), (2, 64), (3, 1)):
        g = engine.direct_groups(N, K)
        assert 1 <= g <= (K + 1) // 2 and (N * g >= min(2 * T, N * ((K + 1) // 2)))


@pytest.mark.parametrize('filters,stride', [((3, 3), 1), ((1, 1), 1), ((1, 1), 2)])   # 1x1: the pointwise path
def test_empty_batch(method, filters, stride):
    "A batch of 0 images gives an empty output and empty input gradient, and zero filter gradients"
    x, w = np.ones((0, 2, 5, 5), np.float32), np.ones((3, 2) + filters, np.float32)
    out = conv2d(x, w, np.ones(3, np.float32), stride)
    assert out.shape == (0, 3) + out.shape[2:] and out.shape[2] == (5 - filters[0]) // stride + 1
    dx, dw, db = conv2d_backward(np.ones(out.shape, np.float32), x, w, stride)
    assert dx.shape == x.shape and not dw.any() and not db.any()


@pytest.mark.parametrize('stride', [(7, 1), (1, 9), (10**12, 3), (10**12, 10**12)])
def test_a_stride_beyond_the_input_gives_one_row_or_column(torch, method, stride):
    "A stride longer than the padded input is valid (one output row or column, as in PyTorch) and allocates nothing for it"
    rng = np.random.default_rng(5)
    x, w = rng.normal(size=(2, 3, 6, 7)), rng.normal(size=(4, 3, 3, 2))
    dout_shape = (2, 4) + tuple((n + 2 - f) // s + 1 for n, f, s in zip((6, 7), (3, 2), stride))
    dout = rng.normal(size=dout_shape)
    y = conv2d(x, w, stride=stride, padding=1)
    dx, dw, _ = conv2d_backward(dout, x, w, stride, 1)
    tx, tw = (torch.from_numpy(a).requires_grad_() for a in (x, w))
    ty = torch.nn.functional.conv2d(tx, tw, stride=tuple(min(s, 99) for s in stride), padding=1)
    ty.backward(torch.from_numpy(dout))
    for got, want in ((y, ty), (dx, tx.grad), (dw, tw.grad)):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_nan_propagates(method):
    "A NaN in the input shows up in every output that reads it, and nowhere else (fast-math keeps NaN semantics)"
    x = np.zeros((1, 2, 7, 7), np.float32); x[0, 1, 2, 2] = np.nan
    y = conv2d(x, np.ones((3, 2, 3, 3), np.float32))
    assert np.isnan(y).sum() == 3 * 9 and np.isnan(y[:, :, :3, :3]).all()


SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np
    import dlcourse.engine.conv as engine, dlcourse.kernels.conv as kc
    from dlcourse.conv import conv2d, conv2d_backward
    rng = np.random.default_rng(0)
    results = {}
    for direct in (True, False):
        engine.use_direct = lambda *a: direct
        x, w, b = rng.normal(size=(2, 2, 6, 5)), rng.normal(size=(3, 2, 3, 2)), rng.normal(size=3)
        S = 1 if direct else (2, 1)
        y = conv2d(x, w, b, S, (1, 1))
        dx, dw, db = conv2d_backward(np.ones_like(y), x, w, S, (1, 1))
        results[str(direct)] = [a.tolist() for a in (x, w, b, y, dx, dw, db)]
    engine.use_register_tiles = lambda *a: True                      # float32, stride 1: the register tiles
    x, w, b = (rng.normal(size=s).astype(np.float32) for s in ((2, 7, 5, 4), (17, 7, 3, 2), (17,)))
    y = conv2d(x, w, b, 1, (1, 1))
    dx, dw, db = conv2d_backward(np.ones_like(y), x, w, 1, (1, 1))
    results['tiles'] = [a.tolist() for a in (x, w, b, y, dx, dw, db)]
    engine.use_register_tiles, engine.use_direct = (lambda *a: False), (lambda *a: True)
    engine.use_direct_tiles = lambda dtype: True                     # float32, stride 1: the direct register tiles
    x, w, b = (rng.normal(size=s).astype(np.float32) for s in ((2, 8, 6, 5), (6, 8, 3, 3), (6,)))
    y = conv2d(x, w, b, 1, (1, 1))
    dx, dw, db = conv2d_backward(np.ones_like(y), x, w, 1, (1, 1))
    results['direct-tiles'] = [a.tolist() for a in (x, w, b, y, dx, dw, db)]
    stats = {name: (sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))
             for name, f in vars(kc).items() if hasattr(f, 'stats') and f.signatures}
    json.dump(dict(results=results, stats=stats, jit_disabled=not hasattr(kc.im2col, 'stats')), sys.stdout)
''')




def run_script(**env):
    res = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True, timeout=600,
                         env=compiled_env(**env))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def check_results(results):
    """The child's results are this process's in float64 up to rounding: 1e-12 of each array's scale for its float64
    results (another summation order), 1e-5 for the register tiles' float32 ones (sums of at most about a hundred terms)"""
    for key, arrays in results.items():
        x, w, b, y, dx, dw, db = (np.array(a, np.float64) for a in arrays)
        S, tol = {'True': (1, 1e-12), 'False': ((2, 1), 1e-12), 'tiles': (1, 1e-5), 'direct-tiles': (1, 1e-5)}[key]
        here = (conv2d(x, w, b, S, (1, 1)), *conv2d_backward(np.ones_like(y), x, w, S, (1, 1)))
        for got, want in zip((y, dx, dw, db), here):
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_kernels_run_without_jit():
    "With NUMBA_DISABLE_JIT=1 the kernel families run as plain (bounds-checked) Python and give the same results"
    out = run_script(NUMBA_DISABLE_JIT='1')
    assert out['jit_disabled']
    check_results(out['results'])


def test_boundscheck_catches_a_wrong_index(tmp_path):
    """Under NUMBA_BOUNDSCHECK=1 (tools/test runs the kernel tests so) a kernel given a too small output raises IndexError
    instead of writing past it, also for the parallel kernels (jit compiles them serially then), and a register-tile
    kernel given too few filters raises it instead of reading past them"""
    script = textwrap.dedent('''
        import numpy as np
        from dlcourse.kernels.conv import conv_nhwc_forward, im2col
        try: im2col(np.zeros((2, 3, 8, 8), np.float32), 3, 3, 1, 1, 0, 0, np.empty((4, 4), np.float32))
        except IndexError: print('IndexError')
        try:                                 # filters for 3 input channels where the input has 4: the vectors read past them
            conv_nhwc_forward(np.zeros((1, 5, 5, 4), np.float32), np.zeros((27, 16), np.float32),
                              np.zeros(16, np.float32), 3, 3, 1, 1, np.empty((1, 16, 3, 3), np.float32))
        except IndexError: print('IndexError')
    ''')
    res = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=600,
                         env=compiled_env(NUMBA_BOUNDSCHECK='1', NUMBA_CACHE_DIR=str(tmp_path)))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ['IndexError'] * 2


def test_kernels_load_from_the_cache(tmp_path):
    "A second process loads every compiled kernel from Numba's on-disk cache instead of compiling it"
    cache = dict(NUMBA_CACHE_DIR=str(tmp_path),      # a private cache: no other process writes its index meanwhile
                 DLCOURSE_PREBUILT='0')              # Numba's own cache, not the shipped code (tests/test_prebuilt.py)
    first = run_script(**cache)['stats']
    assert all(misses > 0 for hits, misses in first.values()), 'the first process should have compiled'
    stats = run_script(**cache)['stats']
    assert stats, 'no kernel ran'
    for name, (hits, misses) in stats.items():
        assert misses == 0 and hits > 0, f"{name} was compiled again (cache hits {hits}, misses {misses})"
