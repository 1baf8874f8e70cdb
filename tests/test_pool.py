"""Pooling (lesson 05): dlcourse.pool and dlcourse.kernels.pool.

Oracle tests against PyTorch (F.max_pool2d, F.avg_pool2d; sum pooling = average x window area) for outputs, arg-max
indices and input gradients over random shapes (hypothesis), dedicated tie and NaN tests, bad input, and the kernels
without JIT (NUMBA_DISABLE_JIT=1, in a subprocess).
"""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from conftest import compiled_env

from dlcourse.kernels.config import SERIAL_VALUES
from dlcourse.kernels import pool as kernels
from dlcourse.pool import (AvgPool2d, MaxPool2d, SumPool2d, avg_pool2d, max_pool2d, pool_args, pool_floors,
                           pool_output_shape, sum_pool2d)

RTOL = {np.float32: 1e-4, np.float64: 1e-10}
LAYERS = {'max': MaxPool2d, 'sum': SumPool2d, 'avg': AvgPool2d}
FUNCTIONS = {'max': max_pool2d, 'sum': sum_pool2d, 'avg': avg_pool2d}

_rng = np.random.default_rng(5)
_x = _rng.permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 50.0      # distinct values, >= 0.02 apart: no (near-)ties
_x9 = _rng.permutation(2 * 2 * 9 * 8).reshape(2, 2, 9, 8) / 50.0

# name -> (module factory, float64 input, target): collected by tests/test_gradcheck.py (< 1e-7)
GRAD_CASES = {
    'MaxPool2d': lambda: (MaxPool2d(2), _x, None),
    'MaxPool2d-3x3-stride2': lambda: (MaxPool2d(3, stride=2), _x9, None),
    'MaxPool2d-overlap-padding': lambda: (MaxPool2d((3, 2), stride=1, padding=(1, 1)), _x, None),
    'SumPool2d': lambda: (SumPool2d(2), _x, None),
    'SumPool2d-overlap-padding': lambda: (SumPool2d(3, stride=2, padding=1), _x9, None),
    'AvgPool2d': lambda: (AvgPool2d(2), _x, None),
    'AvgPool2d-rect-padding': lambda: (AvgPool2d((3, 2), stride=(1, 2), padding=(1, 0)), _x, None),
}


def torch_pool(torch, mode, x, k, s, p, dout=None, indices=False):
    "PyTorch's output (and input gradient for `dout`, and arg-max indices) for our pooling `mode`"
    F = torch.nn.functional
    xt = torch.tensor(x, requires_grad=True)
    if mode == 'max':
        y, idx = F.max_pool2d(xt, k, s, p, return_indices=True)
    else:
        y, idx = F.avg_pool2d(xt, k, s, p, count_include_pad=True), None
        if mode == 'sum': y = y * (k[0] * k[1])
    dx = None
    if dout is not None:
        y.backward(torch.tensor(dout))
        dx = xt.grad.numpy()
    return y.detach().numpy(), dx, None if idx is None else idx.numpy()


def ours(mode, x, k, s, p, dout):
    "Our layer's output and input gradient, and the max layer's indices"
    layer = LAYERS[mode](k, s, p)
    y = layer(x)
    return y, layer.backward(dout), getattr(layer, '_idx', None)


@st.composite
def pool_cases(draw):
    "A random pooling problem: kernel 1..the padded input, stride 1-3, padding 0..k/2, non-square, batch/channels 1-3"
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    k, p = [], []
    for size in (h, w):
        ks = draw(st.integers(1, size + 2))                              # up to 2 larger than the map: needs padding
        lo = max(0, -(-(ks - size) // 2))                                # padding needed for the window to fit
        assume(lo <= ks // 2)
        k.append(ks); p.append(draw(st.integers(lo, ks // 2)))
    s = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    return (n, c, h, w), tuple(k), tuple(s), tuple(p)


def as_arg(pair, draw_int):
    "An (h, w) pair as PyTorch accepts it: an int when square (sometimes), else the tuple"
    return pair[0] if pair[0] == pair[1] and draw_int else pair


@pytest.fixture(params=['parallel', 'serial'])
def threads(request):
    """Run a test on inputs large enough for the kernels' parallel loops, or small enough for their serial ones (the
    kernels choose by size, kernels.config.SERIAL_VALUES): `threads(x)` tiles x along the batch in the parallel case"""
    if request.param == 'serial': return lambda x: x
    return lambda x: np.tile(x, (-(-SERIAL_VALUES // x.size), 1, 1, 1)) if x.size else x


@pytest.mark.parametrize('mode', ['max', 'sum', 'avg'])
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])   # `threads` is the same for every example
@given(case=pool_cases(), dtype=st.sampled_from([np.float32, np.float64]), ints=st.booleans(), seed=st.integers(0, 2**16))
def test_layers_match_torch(torch, threads, mode, case, dtype, ints, seed):
    shape, k, s, p = case
    rng = np.random.default_rng(seed)
    x = threads((1 + rng.permutation(int(np.prod(shape)))).reshape(shape).astype(dtype))   # distinct, positive: no ties
    y_ref, _, _ = torch_pool(torch, mode, x, k, s, p)
    dout = rng.uniform(0.5, 1.5, y_ref.shape).astype(dtype)                         # positive: no cancellation
    y_ref, dx_ref, idx_ref = torch_pool(torch, mode, x, k, s, p, dout)
    y, dx, idx = ours(mode, x, as_arg(k, ints), as_arg(s, ints), as_arg(p, ints), dout)
    assert y.dtype == dx.dtype == dtype and y.shape == y_ref.shape and dx.shape == x.shape
    np.testing.assert_allclose(y, y_ref, rtol=RTOL[dtype], atol=0)
    np.testing.assert_allclose(dx, dx_ref, rtol=RTOL[dtype], atol=0)
    if mode == 'max':
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)


@pytest.mark.parametrize('mode', ['max', 'sum', 'avg'])
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])   # `threads` is the same for every example
@given(case=pool_cases(), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_functions_match_torch_on_signed_data(torch, threads, mode, case, dtype, seed):
    "Normal data (signed, any magnitude), stride left to its default or given"
    shape, k, s, p = case
    x = threads(np.random.default_rng(seed).normal(size=shape).astype(dtype))
    stride = None if s == (1, 1) else s
    y_ref, _, _ = torch_pool(torch, mode, x, k, k if stride is None else s, p)
    y = FUNCTIONS[mode](x, k, stride, p)
    np.testing.assert_allclose(y, y_ref, rtol=RTOL[dtype], atol=RTOL[dtype] * np.abs(x).max() * k[0] * k[1])


def max_pool_matches_torch(torch, x, k, s, p, rng):
    "Max pooling of x forward and backward (a random output gradient): output, arg-max indices and gradient equal PyTorch's"
    k2, s2, p2 = pool_args(k, s, p)
    dout = rng.normal(size=pool_output_shape(x.shape, k, s, p)).astype(x.dtype)
    y_ref, dx_ref, idx_ref = torch_pool(torch, 'max', x, k2, s2, p2, dout)
    y, dx, idx = ours('max', x, k, s, p, dout)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_allclose(dx, dx_ref, rtol=RTOL[x.dtype.type], atol=RTOL[x.dtype.type])
    return y


@pytest.mark.parametrize('k,s,p', [(2, 2, 0), (2, 1, 0), (3, 2, 0), (3, 1, 1), (3, 2, 1), ((2, 3), (1, 2), (1, 0)),
                                   (4, 3, 2), (1, 1, 0), (5, 5, 0)])
@pytest.mark.parametrize('data', ['ones', 'small-integers', '-inf'])
def test_ties_match_torch(torch, threads, k, s, p, data):
    "Ties: the first maximum in row-major window order gets the gradient, as in PyTorch (indices and gradients equal)"
    rng = np.random.default_rng(0)
    x = {'ones': np.ones((2, 3, 10, 9)), 'small-integers': rng.integers(0, 3, (2, 3, 10, 9)).astype(float),
         '-inf': np.where(rng.random((2, 3, 10, 9)) < 0.8, -np.inf, 1.0)}[data]
    x = threads(x)
    for dtype in (np.float32, np.float64):
        max_pool_matches_torch(torch, x.astype(dtype), k, s, p, rng)


def test_tie_goes_to_first_in_row_major_order(torch):
    "Spelled out: a window [[1, 5], [5, 5]] sends its gradient to the top-right 5 (row 0 before row 1)"
    x = np.array([[[[1., 5.], [5., 5.]]]])
    layer = MaxPool2d(2)
    layer(x)
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1, 1, 1)))[0, 0], [[0, 1], [0, 0]])
    _, dx_ref, _ = torch_pool(torch, 'max', x, (2, 2), (2, 2), (0, 0), np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(dx_ref[0, 0], [[0, 1], [0, 0]])


@pytest.mark.parametrize('k,s,p', [(2, 2, 0), (3, 2, 0), (3, 1, 1), (2, 1, 1), ((3, 2), (2, 1), (1, 0))])
def test_nan_propagates_like_torch(torch, threads, k, s, p):
    "A window holding NaN gives NaN; the gradient goes to its last NaN; indices and gradients equal PyTorch's"
    rng = np.random.default_rng(1)
    x = rng.permutation(2 * 2 * 9 * 8).reshape(2, 2, 9, 8).astype(float)
    x[rng.random(x.shape) < 0.1] = np.nan
    x[0, 0, 0, :3] = np.nan                                            # several NaNs in one window
    x[1, 1, 2, 2] = np.inf
    x = threads(x)
    k2, s2, p2 = pool_args(k, s, p)
    for dtype in (np.float32, np.float64):
        xd = x.astype(dtype)
        y = max_pool_matches_torch(torch, xd, k, s, p, rng)             # NaN where PyTorch has NaN, equal elsewhere
        assert np.isnan(y).any()
        for mode in ('sum', 'avg'):
            np.testing.assert_array_equal(np.isnan(FUNCTIONS[mode](xd, k, s, p)), np.isnan(torch_pool(torch, mode, xd, k2, s2, p2)[0]))


def test_lecture_example():
    a = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32)[None, None]
    np.testing.assert_array_equal(max_pool2d(a, 2, 2), [[[[6, 8], [3, 4]]]])
    np.testing.assert_array_equal(sum_pool2d(a, 2), [[[[13, 21], [8, 8]]]])
    np.testing.assert_array_equal(avg_pool2d(a, 2), [[[[3.25, 5.25], [2, 2]]]])
    np.testing.assert_array_equal(MaxPool2d(3, stride=2)(np.ones((1, 1, 5, 5))), np.ones((1, 1, 2, 2)))


def test_overlapping_windows_accumulate():
    x = np.array([[1., 2., 3.], [4., 9., 5.], [6., 7., 8.]])[None, None]   # the 9 is the max of all four 2x2 windows
    layer = MaxPool2d(2, stride=1)
    np.testing.assert_array_equal(layer(x), 9 * np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(layer.backward(np.array([[[[1., 2.], [3., 4.]]]]))[0, 0], [[0, 0, 0], [0, 10, 0], [0, 0, 0]])
    avg = AvgPool2d(2, stride=1)
    avg(x)
    np.testing.assert_allclose(avg.backward(np.ones((1, 1, 2, 2)))[0, 0], np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4)


def test_floor_is_reported():
    layer = MaxPool2d(2)
    assert layer.floored is None
    layer(np.ones((1, 1, 5, 4), np.float32))
    assert layer.floored is True
    assert layer(np.ones((1, 1, 4, 4), np.float32)).shape == (1, 1, 2, 2) and layer.floored is False
    assert pool_floors((1, 1, 7, 7), 3, 3) and not pool_floors((1, 1, 55, 55), 3, 2)
    assert pool_floors((1, 1, 8, 7), (2, 2)) and not pool_floors((1, 1, 7, 9), 3, 2, 1)
    assert AvgPool2d(3, 2).floors((8, 16, 14, 14)) and not AvgPool2d(3, 2).floors((8, 16, 13, 13))
    assert MaxPool2d(3, 2).output_shape((8, 256, 13, 13)) == (8, 256, 6, 6)
    assert pool_output_shape((2, 3, 10, 9), (2, 3), (1, 2), (1, 0)) == (2, 3, 11, 4)


def test_unused_rows_get_zero_gradient():
    for layer in (MaxPool2d(2), SumPool2d(2), AvgPool2d(3, stride=3), MaxPool2d(3, stride=2)):
        x = np.arange(1., 1 + 7 * 8).reshape(1, 1, 7, 8)
        y = layer(x)
        dx = layer.backward(np.ones_like(y))
        assert layer.floored
        used_h = (y.shape[2] - 1) * layer.stride[0] + layer.kernel_size[0]
        used_w = (y.shape[3] - 1) * layer.stride[1] + layer.kernel_size[1]
        assert np.all(dx[..., used_h:, :] == 0) and np.all(dx[..., :, used_w:] == 0), layer
        assert dx.sum() == pytest.approx(y.size * (np.prod(layer.kernel_size) if isinstance(layer, SumPool2d) else 1))


def test_backward_overwrites_and_returns_fresh_arrays():
    "backward returns a new gradient each call (it does not add to the previous call's)"
    for layer in LAYERS.values():
        m = layer(2)
        m(_x)
        g1 = m.backward(np.ones((2, 3, 3, 3)))
        g2 = m.backward(np.ones((2, 3, 3, 3)))
        np.testing.assert_array_equal(g1, g2)
        assert g1 is not g2


def test_non_contiguous_inputs_work():
    rng = np.random.default_rng(3)
    base = rng.permutation(2 * 3 * 12 * 10).reshape(2, 3, 12, 10).astype(np.float32)
    views = {'strided': base[:, :, ::2], 'transposed': base.transpose(0, 1, 3, 2), 'fortran': np.asfortranarray(base),
             'channel slice': base[:, 1:], 'negative strides': base[..., ::-1], 'read-only': base.copy()}
    views['read-only'].flags.writeable = False
    for name, v in views.items():
        for mode, layer in LAYERS.items():
            m = layer(3, 2, 1)
            y = m(v)
            np.testing.assert_array_equal(y, FUNCTIONS[mode](np.ascontiguousarray(v), 3, 2, 1), err_msg=name)
            dout = np.ones(y.shape[::-1], np.float32).T                  # a non-contiguous gradient too
            ref = layer(3, 2, 1)
            ref(np.ascontiguousarray(v))
            np.testing.assert_array_equal(m.backward(dout), ref.backward(np.ascontiguousarray(dout)), err_msg=name)


def test_empty_batch():
    for mode, f in FUNCTIONS.items():
        assert f(np.ones((0, 3, 4, 4), np.float32), 2).shape == (0, 3, 2, 2)
    m = MaxPool2d(2)
    m(np.ones((0, 3, 4, 4)))
    assert m.backward(np.ones((0, 3, 2, 2))).shape == (0, 3, 4, 4)


def test_module_api():
    m = MaxPool2d(3, stride=2)
    assert repr(m) == 'MaxPool2d(kernel_size=3, stride=2, padding=0)'
    assert repr(AvgPool2d((2, 1), padding=(1, 0))) == 'AvgPool2d(kernel_size=(2, 1), stride=(2, 1), padding=(1, 0))'
    assert m.parameters() == [] and m.state_dict() == {} and m.dtype is None
    assert m.kernel_size == (3, 3) and m.stride == (2, 2) and m.padding == (0, 0)
    assert MaxPool2d(2).stride == (2, 2) and MaxPool2d((2, 3)).stride == (2, 3)      # stride defaults to the window
    for layer in LAYERS.values():
        for dtype in (np.float32, np.float64):
            assert layer(2)(np.ones((1, 2, 4, 4), dtype)).dtype == dtype


BAD = [
    ('kernel larger than the input', lambda: max_pool2d(np.ones((1, 1, 4, 3)), 4), ValueError,
     'kernel_size 4 is larger than the padded input width: 3 + 2*0 = 3'),
    ('kernel larger than the padded input', lambda: MaxPool2d(5, padding=1)(np.ones((1, 1, 2, 9))), ValueError,
     'kernel_size 5 is larger than the padded input height: 2 + 2*1 = 4'),
    ('avg kernel too large', lambda: avg_pool2d(np.ones((1, 1, 2, 2)), (3, 1)), ValueError, 'kernel_size 3 is larger'),
    ('kernel zero', lambda: MaxPool2d(0), ValueError, 'kernel_size must be an integer >= 1 or a (height, width) pair of them, got 0'),
    ('kernel float', lambda: MaxPool2d(2.0), ValueError, 'kernel_size must be an integer >= 1'),
    ('kernel bool', lambda: MaxPool2d(True), ValueError, 'kernel_size must be an integer >= 1'),
    ('kernel triple', lambda: MaxPool2d((2, 2, 2)), ValueError, 'kernel_size must be an integer >= 1 or a (height, width) pair'),
    ('kernel string', lambda: max_pool2d(np.ones((1, 1, 4, 4)), '2'), ValueError, "kernel_size must be an integer >= 1"),
    ('stride zero', lambda: MaxPool2d(2, stride=0), ValueError, 'stride must be an integer >= 1 or a (height, width) pair of them, got 0'),
    ('stride negative', lambda: sum_pool2d(np.ones((1, 1, 4, 4)), 2, -1), ValueError, 'stride must be an integer >= 1'),
    ('stride pair zero', lambda: AvgPool2d(2, stride=(1, 0)), ValueError, 'stride must be an integer >= 1 or a (height, width) pair of them, got (1, 0)'),
    ('padding negative', lambda: MaxPool2d(2, padding=-1), ValueError, 'padding must be an integer >= 0 or a (height, width) pair of them, got -1'),
    ('padding too large', lambda: MaxPool2d(3, padding=2), ValueError,
     'padding must be at most half of kernel_size (as in PyTorch), got padding=(2, 2) for kernel_size=(3, 3)'),
    ('padding too large (w)', lambda: avg_pool2d(np.ones((1, 1, 4, 4)), (4, 1), padding=(2, 1)), ValueError,
     'padding must be at most half of kernel_size'),
    ('3-D input', lambda: MaxPool2d(2)(np.ones((1, 4, 4), np.float32)), ValueError,
     'x must have shape (N, C, H, W) (4-D), got (1, 4, 4); pooling takes a batch (N, C, H, W); use x[None] for one example'),
    ('5-D input', lambda: avg_pool2d(np.ones((1, 1, 1, 4, 4)), 2), ValueError, 'x must have shape (N, C, H, W) (4-D)'),
    ('empty map', lambda: max_pool2d(np.ones((1, 1, 0, 4)), 1), ValueError, 'x must have non-empty maps'),
    ('int input', lambda: MaxPool2d(2)(np.ones((1, 1, 4, 4), int)), TypeError,
     'x must have dtype float32 or float64, got int64; convert it first'),
    ('uint8 input', lambda: avg_pool2d(np.ones((1, 1, 4, 4), np.uint8), 2), TypeError, 'x must have dtype float32 or float64, got uint8'),
    ('float16 input', lambda: sum_pool2d(np.ones((1, 1, 4, 4), np.float16), 2), TypeError, 'got float16'),
    ('bool input', lambda: max_pool2d(np.ones((1, 1, 4, 4), bool), 2), TypeError, 'got bool'),
    ('list input', lambda: max_pool2d([[[[1.0]]]], 1), TypeError, 'x must be a numpy.ndarray, got list'),
    ('backward first', lambda: MaxPool2d(2).backward(np.ones((1, 1, 2, 2))), ValueError, 'MaxPool2d.backward() was called before forward()'),
    ('avg backward first', lambda: AvgPool2d(2).backward(np.ones((1, 1, 2, 2))), ValueError, 'before forward()'),
]


def used(layer, shape=(1, 2, 4, 4), dtype=np.float32):
    layer(np.ones(shape, dtype))
    return layer


BAD += [
    (f'{name} dout shape', (lambda L=L: used(L(2)).backward(np.ones((1, 2, 4, 4), np.float32))), ValueError,
     'dout must have shape (1, 2, 2, 2) (4-D), got (1, 2, 4, 4)') for name, L in LAYERS.items()
] + [
    (f'{name} dout dtype', (lambda L=L: used(L(2)).backward(np.ones((1, 2, 2, 2)))), TypeError,
     'dout has dtype float64, expected float32') for name, L in LAYERS.items()
] + [
    (f'{name} dout int', (lambda L=L: used(L(2)).backward(np.ones((1, 2, 2, 2), int))), TypeError,
     'dout must have dtype float32 or float64') for name, L in LAYERS.items()
]


@pytest.mark.parametrize('desc,call,exc,fragment', BAD, ids=[b[0] for b in BAD])
def test_bad_input(desc, call, exc, fragment):
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value), f"message {str(info.value)!r} lacks {fragment!r}"


def test_kernels_are_cached_numba_functions():
    "The kernels are compiled with the jit helper (cache=True); checked in a child with compiled kernels (tools/test also"
    " runs this file under NUMBA_DISABLE_JIT=1)"
    script = ("from dlcourse.kernels import pool as k\n"
              "for n in ('max_pool2d_forward', 'max_pool2d_backward', 'sum_pool2d_forward', 'sum_pool2d_backward'):\n"
              "    print(n, type(getattr(k, n)._cache).__name__)")
    r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=compiled_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split('\n')[:-1]
    assert len(lines) == 4 and all(l.endswith(' FunctionCache') for l in lines), r.stdout


NO_JIT_SCRIPT = textwrap.dedent('''
    import json, sys, types
    import numpy as np
    from dlcourse.kernels import pool as kernels
    from dlcourse.pool import MaxPool2d, SumPool2d, AvgPool2d
    assert isinstance(kernels.max_pool2d_forward, types.FunctionType), 'the JIT is not disabled'
    x = np.random.default_rng(0).permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6).astype(np.float64)
    x[0, 1, 3, 3] = np.nan
    results = {}
    for name, layer in [('max2', MaxPool2d(2)), ('max3', MaxPool2d(3, 2)), ('max-pad', MaxPool2d((3, 2), 1, 1)),
                        ('sum2', SumPool2d(2)), ('avg-pad', AvgPool2d(3, 2, 1))]:
        for dtype in (np.float32, np.float64):
            y = layer(x.astype(dtype))
            dx = layer.backward(np.arange(y.size, dtype=dtype).reshape(y.shape) / y.size)
            results[f'{name}-{np.dtype(dtype).name}'] = [y.tolist(), dx.tolist()]
    json.dump(results, sys.stdout)
''')


def test_kernels_run_without_jit():
    "NUMBA_DISABLE_JIT=1: the kernels run as plain Python (bounds-checked) and give the compiled results"
    import os
    env = dict(os.environ, NUMBA_DISABLE_JIT='1')
    r = subprocess.run([sys.executable, '-c', NO_JIT_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)                                     # Python's json reads NaN
    x = np.random.default_rng(0).permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6).astype(np.float64)
    x[0, 1, 3, 3] = np.nan
    for name, layer in [('max2', MaxPool2d(2)), ('max3', MaxPool2d(3, 2)), ('max-pad', MaxPool2d((3, 2), 1, 1)),
                        ('sum2', SumPool2d(2)), ('avg-pad', AvgPool2d(3, 2, 1))]:
        for dtype in (np.float32, np.float64):
            y = layer(x.astype(dtype))
            dx = layer.backward(np.arange(y.size, dtype=dtype).reshape(y.shape) / y.size)
            y_nojit, dx_nojit = (np.array(v, dtype) for v in results[f'{name}-{np.dtype(dtype).name}'])
            np.testing.assert_allclose(y_nojit, y, rtol=RTOL[dtype], err_msg=name)
            np.testing.assert_allclose(dx_nojit, dx, rtol=RTOL[dtype], err_msg=name)
