"""What a cold start compiles: a fresh process with an empty Numba cache runs one training step of a toy problem's MLP,
then one of LeNet-5 (what the first batch of `dlcourse train` runs), then one of the small ResNet-18 of lesson 08a, and
Numba's compile events say which kernels it compiled and how often. Each kernel is compiled once (no second
specialisation for a literal or an unsigned loop index), and the parallel kernels whose work a small network runs on one
thread (activations, the optimizer's step, small matrix products) are not compiled at all."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dlcourse.kernels import act as K
from dlcourse.kernels.config import SERIAL_VALUES
from conftest import COUNT_COMPILATIONS

PROBE = COUNT_COMPILATIONS + r'''
import json
import numpy as np
import dlcourse as dl
loss_fn = dl.CrossEntropyLoss()
model = dl.Sequential(dl.Linear(2, 64, rng=0), dl.ReLU(), dl.Linear(64, 2, rng=1)).train()   # a toy problem's network
opt = dl.SGD(model.parameters(), lr=0.05, momentum=0.9)
x = np.random.default_rng(2).normal(size=(32, 2)).astype(np.float32)
loss_fn(model(x), np.arange(32) % 2); opt.zero_grad(); model.backward(loss_fn.backward()); opt.step()
mlp = dict(compiled)
model = dl.lenet5(rng=0).train()
opt = dl.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
x = np.random.default_rng(0).normal(size=(64, 1, 28, 28)).astype(np.float32)
loss_fn(model(x), np.arange(64) % 10); opt.zero_grad(); model.backward(loss_fn.backward()); opt.step()
lenet = dict(compiled)
model = dl.resnet18(num_classes=10, in_channels=1, small_input=True, width=8, rng=0).train()   # batch norm, im2col, ReLU
opt = dl.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = np.random.default_rng(1).normal(size=(16, 1, 28, 28)).astype(np.float32)
loss_fn(model(x), np.arange(16) % 10); opt.zero_grad(); model.backward(loss_fn.backward()); opt.step()
print(json.dumps({k: v for k, v in mlp.items() if k.startswith('dlcourse')}))
print(json.dumps({k: v for k, v in lenet.items() if k.startswith('dlcourse')}))
print(json.dumps({k: v for k, v in compiled.items() if k.startswith('dlcourse')}))
'''


@pytest.fixture(scope='module')
def probe(tmp_path_factory):
    """({kernel: times compiled} by a small MLP's step, the same after a LeNet-5 step, and after a ResNet-18 step) in a
    fresh process, empty cache"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path_factory.mktemp('numba-cache')),
               DLCOURSE_PREBUILT='0')      # what the compiler does: the shipped code is tests/test_prebuilt.py's
    out = subprocess.run([sys.executable, '-c', PROBE], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return tuple(json.loads(line) for line in out.stdout.strip().splitlines()[-3:])


@pytest.fixture
def compiled_by_mlp(probe): return probe[0]


@pytest.fixture
def compiled(probe): return probe[1]


@pytest.fixture
def compiled_with_resnet(probe): return probe[2]


def test_the_first_step_compiles_the_lenet_kernels(compiled):
    for name in ('fused.conv_act_pool_forward', 'fused.pool_act_backward_wide', 'conv.conv_direct_backward_input',
                 'conv.conv_direct_backward_weight', 'act.act_span', 'optim.sgd_span'):
        assert compiled.get(f'dlcourse.kernels.{name}', 0) >= 1, (name, compiled)


def test_every_kernel_is_compiled_once(compiled, compiled_with_resnet):
    """Once each; but kernels.simd's vector operations, one-line templates inlined into the register-tile kernels, are
    compiled once for the serial kernels and once for the parallel ones (their compiler flags differ)"""
    templates = {k: v for k, v in compiled_with_resnet.items() if k.startswith('dlcourse.kernels.simd.')}
    from dlcourse.engine.conv import VECTOR_FMA
    if VECTOR_FMA:                                        # AVX2 and FMA: the small ResNet-18 runs the register tiles
        assert compiled_with_resnet.get('dlcourse.kernels.conv.conv_nhwc_forward') == 1 and templates
    assert max(templates.values(), default=0) <= 2, templates
    assert {k: v for k, v in compiled.items() if v > 1} == {}
    assert compiled_with_resnet.get('dlcourse.kernels.norm.batch_norm_forward') == 1    # the ResNet step ran
    assert {k: v for k, v in compiled_with_resnet.items() if v > 1 and k not in templates} == {}   # float32 only: once


def test_small_arrays_never_compile_the_parallel_elementwise_kernels(compiled):
    for name in ('act.act_forward', 'act.act_backward', 'optim.sgd_update'):
        assert f'dlcourse.kernels.{name}' not in compiled, compiled


def test_small_products_never_compile_the_parallel_matrix_product(compiled_by_mlp, compiled):
    "A toy problem's products are all small: its step runs gemm_nt's blocks and never compiles gemm_nt's parallel loop"
    assert compiled_by_mlp.get('dlcourse.kernels.conv._gemm_nt_blocks') == 1, compiled_by_mlp
    assert 'dlcourse.kernels.conv.gemm_nt' not in compiled_by_mlp, compiled_by_mlp
    assert compiled.get('dlcourse.kernels.conv.gemm_nt') == 1, compiled     # LeNet-5's C5 at batch 64: 3 million


@pytest.mark.parametrize('n', [1, 1000, SERIAL_VALUES - 1, SERIAL_VALUES, 3 * SERIAL_VALUES + 17])
@pytest.mark.parametrize('code', [K.SIGMOID, K.TANH, K.RELU, K.ELU])
def test_both_paths_give_the_bits_of_the_span_kernels(n, code):
    "apply_act/apply_grad choose by size between the span kernels and the parallel kernels, which run the same spans"
    rng = np.random.default_rng(n)
    x = (3 * rng.normal(size=n)).astype(np.float32)
    dout = rng.normal(size=n).astype(np.float32)
    param = np.float32(0.5)
    y, want_y = np.empty_like(x), np.empty_like(x)
    K.apply_act(x, code, param, y)
    K.act_span(x, want_y, code, param)
    assert np.array_equal(y, want_y)
    dx, want_dx = np.empty_like(x), np.empty_like(x)
    K.apply_grad(dout, x, y, code, param, dx)
    K.grad_span(dout, x, y, code, param, want_dx)
    assert np.array_equal(dx, want_dx)
