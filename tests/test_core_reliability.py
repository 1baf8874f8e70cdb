"""Right answers or clear errors on every shape and state the API allows.

- Importing dlcourse works where Numba finds no writable place for its cache (a read-only installation and home), with
  one warning, and changes no Numba setting but the documented threading-layer priority.
- One module instance at two places of a network (which would give wrong gradients) is refused, also in nested trees.
- Empty batches give empty results or a clear error (never ZeroDivisionError); a float64 state beyond float32's range is
  refused by a float32 model; from_torch refuses what it cannot convert exactly.
- Every activation kernel agrees with lesson 04's NumPy definitions at -inf, inf and NaN, plain and fused.
- Parameters, buffers and gradients replaced by the user are checked on every path that reaches a kernel
  (tests/reliability_child.py, in a child process).
- A hostile user's other arguments give right answers or errors naming them: pooling windows and strides beyond int64,
  a normalisation window wider than the channels, hyper-parameters and window sizes set after construction, 0-d arrays,
  empty maps, a negative running variance, flags that are not booleans, a summary batch beyond memory.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dlcourse as dl
import reliability_child
from conftest import compiled_env
from dlcourse.activations import ACTIVATIONS
from dlcourse.engine.fusion import ConvActPool, fusion

HERE = Path(__file__).parent
PACKAGE = Path(dl.__file__).parent
F32, F64 = np.float32, np.float64


# ---------------------------------------------------------------------------------------- import without a Numba cache
CHILD = textwrap.dedent('''
    import json, os, sys, warnings
    import numba
    import numpy as np
    settings = lambda: {k: repr(getattr(numba.config, k)) for k in dir(numba.config) if k.isupper()}
    before, env = settings(), dict(os.environ)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        import dlcourse as dl
        relu = dl.ReLU()(np.array([-1., 2., -np.inf], np.float32))
        lin = dl.Linear(2, 3, rng=0)
        y = lin(np.ones((1, 2), np.float32))
    print(json.dumps({'changed': sorted(k for k, v in settings().items() if before[k] != v), 'env_same': env == dict(os.environ),
                      'warnings': [f"{w.category.__name__}: {w.message}" for w in caught], 'relu': relu.tolist(),
                      'linear_ok': bool(np.allclose(y, lin.weight.data.sum(1) + lin.bias.data)),
                      'package': dl.__file__, 'cache_dir': numba.config.CACHE_DIR}))
''')


def run_child(cwd, **env):
    r = subprocess.run([sys.executable, '-c', CHILD], capture_output=True, text=True, cwd=cwd, env=compiled_env(**env),
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def read_only_copy(tmp_path):
    """A copy of the package where Numba can cache nothing, even for root: a *file* named __pycache__ in every folder
    (so the folder cannot be created), the user's cache folder and NUMBA_CACHE_DIR below a file (/dev/null)"""
    root = tmp_path / 'site'
    shutil.copytree(PACKAGE, root / 'dlcourse', ignore=shutil.ignore_patterns('__pycache__'))
    for d in [root / 'dlcourse', *(p for p in (root / 'dlcourse').rglob('*') if p.is_dir())]: (d / '__pycache__').write_text('')
    return root, dict(PYTHONPATH=str(root), NUMBA_CACHE_DIR='/dev/null/numba', XDG_CACHE_HOME='/dev/null/cache',
                      HOME='/dev/null/home', PYTHONDONTWRITEBYTECODE='1')


def test_import_without_a_writable_cache(tmp_path):
    "Without any writable place for Numba's cache, import and the kernels work, after exactly one warning"
    root, env = read_only_copy(tmp_path)
    r = run_child(tmp_path, **env)
    assert r['package'] == str(root / 'dlcourse' / '__init__.py')          # the copy, not the source tree
    cache = [w for w in r['warnings'] if w.startswith('CacheWarning')]
    assert len(cache) == 1, r['warnings']
    assert 'no locator available' in cache[0] and 'set NUMBA_CACHE_DIR to a writable folder' in cache[0], cache[0]
    assert r['relu'] == [0.0, 2.0, 0.0] and r['linear_ok']
    assert r['changed'] == (['THREADING_LAYER_PRIORITY'] if 'NUMBA_THREADING_LAYER_PRIORITY' not in os.environ else [])
    assert r['env_same'] and r['cache_dir'] == '/dev/null/numba'           # the fallback set no cache folder


def test_import_changes_only_the_documented_numba_setting(tmp_path):
    "Importing dlcourse sets Numba's threading-layer priority, unless the user chose one, and nothing else"
    env = {k: v for k, v in compiled_env(PYTHONPATH=str(PACKAGE.parent)).items() if not k.startswith('NUMBA_THREADING')}
    r = run_child(tmp_path, **env)
    assert r['changed'] == ['THREADING_LAYER_PRIORITY'] and r['env_same']
    assert not [w for w in r['warnings'] if w.startswith('CacheWarning')], r['warnings']
    r = run_child(tmp_path, **{**env, 'NUMBA_THREADING_LAYER_PRIORITY': 'workqueue tbb omp'})
    assert r['changed'] == [] and r['env_same']
    doc = dl.kernels.jit.__doc__
    assert 'THREADING_LAYER_PRIORITY' in doc and 'libtbb.so.12' in doc and 'nothing else' in doc


# ------------------------------------------------------------------------------------- one module, one place in a tree
REUSE = 'create one instance per place'


def test_one_instance_twice_in_a_sequential_is_refused():
    lin = dl.Linear(3, 3, rng=0)
    with pytest.raises(ValueError, match="the same Linear instance is used at '0' and at '2'") as e:
        dl.Sequential(lin, dl.Tanh(), lin)
    assert REUSE in str(e.value) and 'wrong gradients' in str(e.value)
    act = dl.ReLU()                                   # a parameter-free layer keeps its forward values too
    with pytest.raises(ValueError, match=REUSE): dl.Sequential(dl.Linear(3, 3), act, dl.Linear(3, 3), act)
    with pytest.raises(ValueError, match=REUSE): dl.zoo.named(a=lin, b=lin)


def test_nested_reuse_is_refused():
    lin = dl.Linear(3, 3, rng=0)
    with pytest.raises(ValueError, match=r"at '0\.1\.0' and at '1'"):
        dl.Sequential(dl.Sequential(dl.Tanh(), dl.Sequential(lin)), lin)
    block = dl.BasicBlock(2, 2, rng=0)
    with pytest.raises(ValueError, match=r"the same ReLU instance is used at 'relu1' and at 'relu2'"):
        block.relu2 = block.relu1
    inception = dl.Inception(2, 1, 1, 1, 1, 1, 1, rng=0)
    with pytest.raises(ValueError, match=REUSE): inception.branch4 = inception.branch2
    net = dl.Sequential(dl.Linear(2, 2))
    with pytest.raises(ValueError, match='inside itself'): net.append(net)
    with pytest.raises(ValueError, match=REUSE): net.append(dl.Sequential(net[0]))


def test_reuse_in_a_custom_module_and_in_a_list():
    class Twice(dl.Module):
        def __init__(self, layer): super().__init__(); self.first = layer; self.second = layer
    class Listed(dl.Module):
        def __init__(self, layer): super().__init__(); self.layers = [layer, dl.Tanh(), layer]
    for cls in (Twice, Listed):
        with pytest.raises(ValueError, match=REUSE): cls(dl.Linear(2, 2))


def test_reuse_created_after_nesting_is_refused_when_the_network_runs():
    "A branch that gets a second place after it was put into a larger network: the network checks its tree before it runs"
    shared, branch = dl.Linear(2, 2, rng=0), dl.Sequential(dl.Tanh())
    outer = dl.Sequential(branch, shared)
    branch.append(shared)                                  # fine for the branch alone
    x = np.ones((1, 2), F32)
    assert branch(x).shape == (1, 2)
    with pytest.raises(ValueError, match=r"at '0\.1' and at '1'"): outer(x)


def test_refused_assignments_change_nothing_and_legal_trees_still_work():
    lin, net = dl.Linear(2, 2, rng=0), dl.Sequential(dl.Linear(2, 2, rng=1))
    with pytest.raises(ValueError): net.append(net[0])
    assert len(net) == 1 and '1' not in vars(net)
    net.append(lin)                                         # a new instance is fine ...
    setattr(net, '0', dl.Linear(2, 2, rng=2))              # ... and so is replacing a layer by another one
    assert [m.weight for m in net] != [lin.weight, lin.weight] and len(net) == 2
    model = dl.lenet5(rng=0)
    head = model[:3]                                        # a slice is a tree of its own that shares the layers
    x = np.zeros((2, 1, 28, 28), F32)
    assert head(x).shape == (2, 6, 14, 14) and model(x).shape == (2, 10)


def test_two_instances_give_the_right_gradients():
    "What the refusal asks for: two instances with the same weights; their gradients are the chain rule's"
    a, b = dl.Linear(3, 3, dtype=F64, rng=0), dl.Linear(3, 3, dtype=F64, rng=1)
    b.load_state_dict(a.state_dict())
    net = dl.Sequential(a, dl.Tanh(), b)
    report = dl.grad_check(net, np.random.default_rng(0).normal(size=(4, 3)))
    assert report.max < 1e-7, report


# --------------------------------------------------------------------------------------------------- empty batches
EMPTY_LAYERS = {
    'Linear': (dl.Linear(3, 2, rng=0), (0, 3)), 'Flatten': (dl.Flatten(), (0, 2, 3)),
    'Conv2d direct': (dl.Conv2d(1, 2, 3, rng=0), (0, 1, 5, 5)),
    'Conv2d im2col': (dl.Conv2d(1, 2, 3, stride=2, rng=0), (0, 1, 5, 5)),
    'Conv2d dense': (dl.Conv2d(1, 2, 5, rng=0), (0, 1, 5, 5)),
    'Conv2d padded': (dl.Conv2d(2, 3, 3, padding=1, rng=0), (0, 2, 4, 4)),
    'MaxPool2d': (dl.MaxPool2d(2), (0, 2, 4, 4)), 'MaxPool2d 3x3': (dl.MaxPool2d(3, 1, 1), (0, 2, 4, 4)),
    'AvgPool2d': (dl.AvgPool2d(2), (0, 2, 4, 4)), 'SumPool2d': (dl.SumPool2d(3, 2), (0, 2, 5, 5)),
    **{a.layer.__name__: (a.layer(), (0, 3)) for a in ACTIVATIONS.values()},
    'Softmax': (dl.Softmax(), (0, 3)), 'LocalResponseNorm': (dl.LocalResponseNorm(3), (0, 4, 2, 2)),
    'Dropout': (dl.Dropout(0.5, rng=0), (0, 4)), 'GlobalAvgPool2d': (dl.GlobalAvgPool2d(), (0, 3, 2, 2)),
    'BatchNorm2d eval': (dl.BatchNorm2d(3).eval(), (0, 3, 2, 2)),
    'BasicBlock eval': (dl.BasicBlock(2, 4, 2, rng=0).eval(), (0, 2, 6, 6)),
    'Inception eval': (dl.Inception(4, 2, 2, 2, 2, 2, 2, rng=0).eval(), (0, 4, 6, 6)),
    'fused max': (dl.Sequential(dl.Conv2d(1, 2, 3, rng=0), dl.ReLU(), dl.MaxPool2d(2)), (0, 1, 6, 6)),
    'fused avg': (dl.Sequential(dl.Conv2d(1, 2, 3, rng=0), dl.Tanh(), dl.AvgPool2d(2)), (0, 1, 6, 6)),
    'lenet5': (dl.lenet5(rng=0), (0, 1, 28, 28)),
}


@pytest.mark.parametrize('name', list(EMPTY_LAYERS))
def test_empty_batch_through_every_layer(name):
    "N = 0: an empty output of the right shape, an empty input gradient, and parameter gradients still zero"
    layer, shape = EMPTY_LAYERS[name]
    layer.zero_grad()
    y = layer(np.zeros(shape, F32))
    assert y.shape[0] == 0 and y.dtype == F32
    full = layer(np.ones((1, *shape[1:]), F32))            # the shape of one example's output
    assert y.shape[1:] == full.shape[1:]
    layer.zero_grad()
    layer(np.zeros(shape, F32))
    dx = layer.backward(np.zeros(y.shape, F32))
    assert dx.shape == shape and dx.dtype == F32
    for p in layer.parameters(): assert not p.grad.any()


def test_empty_batch_in_training_batch_norm_is_a_clear_error():
    with pytest.raises(ValueError, match='BatchNorm2d needs more than one value per channel in training'):
        dl.BatchNorm2d(3)(np.zeros((0, 3, 2, 2), F32))


def test_losses_and_accuracy_of_an_empty_batch():
    out, labels = np.zeros((0, 3), F32), np.zeros(0, np.int64)
    with pytest.raises(ValueError, match=r'MSELoss: output is empty \(shape \(0, 3\)\), and the mean over no values'):
        dl.MSELoss()(out, out)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: logits is empty .* use reduction='sum'"):
        dl.CrossEntropyLoss()(out, labels)
    with pytest.raises(ValueError, match='logits is empty'): dl.cross_entropy(out, labels)
    for loss, target in ((dl.MSELoss('sum'), out), (dl.CrossEntropyLoss('sum'), labels)):
        assert loss(out, target) == 0
        assert loss.backward().shape == (0, 3)
    assert np.isnan(dl.accuracy(out, labels))              # the accuracy of no examples is undefined: NaN, no error


def test_empty_class_axis_is_a_clear_error():
    for call in (lambda: dl.softmax(np.zeros((2, 0))), lambda: dl.log_softmax(np.zeros((2, 0))),
                 lambda: dl.Softmax()(np.zeros((2, 0), F32))):
        with pytest.raises(ValueError, match=r'x has no values along axis -1 \(shape \(2, 0\)\)'): call()
    with pytest.raises(ValueError, match='at least one class score'): dl.CrossEntropyLoss()(np.zeros((2, 0), F32), np.zeros(2, int))
    with pytest.raises(ValueError, match='axis must be an axis of x'): dl.softmax(np.zeros((2, 3)), axis=2)
    assert dl.softmax(np.zeros((0, 3))).shape == (0, 3)


# ----------------------------------------------------------------------------------------- state beyond float32's range
def test_float64_state_beyond_float32_range_is_refused():
    big = float(np.finfo(F32).max)
    lin = dl.Linear(2, 2, rng=0)
    before = lin.state_dict()
    state = {k: v.astype(F64) for k, v in before.items()}
    state['weight'][0, 0] = 1e39
    with pytest.raises(ValueError, match=r"state\['weight'\] holds values up to 1e\+39, beyond the range of the module's float32"):
        lin.load_state_dict(state)
    for k, v in lin.state_dict().items(): np.testing.assert_array_equal(v, before[k])   # nothing was loaded
    state['weight'][0, 0] = -big                           # float32's largest value itself loads exactly
    lin.load_state_dict(state)
    assert lin.weight.data[0, 0] == -np.finfo(F32).max
    bn = dl.BatchNorm2d(2)                                  # buffers too
    with pytest.raises(ValueError, match=r"state\['running_var'\] holds values up to"):
        bn.load_state_dict({**{k: v.astype(F64) for k, v in bn.state_dict().items()}, 'running_var': np.array([1., 1e300])})
    wide = dl.Linear(2, 2, dtype=F64, rng=0)                # a float64 model holds them
    wide.load_state_dict({**state, 'weight': np.full((2, 2), 1e39)})
    assert (wide.weight.data == 1e39).all()


# ---------------------------------------------------------------------------------------------------- from_torch
def test_from_torch_refuses_what_it_cannot_convert_exactly(torch):
    nn = torch.nn
    for module, text in [(nn.Flatten(start_dim=2), "the course's Flatten keeps the batch axis"),
                         (nn.Flatten(end_dim=2), "start_dim=1, end_dim=-1"),
                         (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(0)), "Flatten keeps the batch axis"),
                         (nn.Softplus(beta=2), 'beta=1, threshold=20'), (nn.Softplus(threshold=5), 'beta=1, threshold=20')]:
        with pytest.raises(TypeError, match=text): dl.from_torch(module)
    lin, relu = nn.Linear(3, 3), nn.ReLU()
    with pytest.raises(TypeError, match=r"the same Linear at '0' and at '2'"):
        dl.from_torch(nn.Sequential(lin, nn.Tanh(), lin))
    with pytest.raises(TypeError, match=r"the same ReLU at '1' and at '3'"):      # was dropped: no weights to miss
        dl.from_torch(nn.Sequential(nn.Linear(3, 3), relu, nn.Linear(3, 3), relu))
    inner = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with pytest.raises(TypeError, match=r"the same Sequential at '0' and at '1\.1'"):
        dl.from_torch(nn.Sequential(inner, nn.Sequential(nn.Tanh(), inner)))

    class Doubled(nn.Linear):
        def forward(self, x): return 2 * super().forward(x)

    class Residual(nn.Sequential):
        def forward(self, x): return x + super().forward(x)
    with pytest.raises(TypeError, match='Doubled has no counterpart'): dl.from_torch(Doubled(3, 3))
    with pytest.raises(TypeError, match='Residual has no counterpart'): dl.from_torch(Residual(nn.Linear(3, 3)))


def test_from_torch_still_converts_the_plain_layers(torch):
    nn = torch.nn
    class Named(nn.Linear): pass                            # a subclass that computes what Linear computes
    module = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Softplus(), nn.Flatten(1, -1), Named(2 * 4 * 4, 3)).eval()
    model = dl.from_torch(module)
    x = np.random.default_rng(0).normal(size=(2, 1, 6, 6)).astype(F32)
    with torch.no_grad(): want = module(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-6)
    shared = nn.Linear(3, 3)                                # given model=, tied modules copy their weights to two layers
    two = dl.from_torch(nn.Sequential(shared, nn.Tanh(), shared), model=dl.Sequential(dl.Linear(3, 3), dl.Tanh(), dl.Linear(3, 3)))
    np.testing.assert_array_equal(two[0].weight.data, two[2].weight.data)


# --------------------------------------------------------------------------------------- activations at -inf, inf, NaN
SPECIAL = [-np.inf, np.inf, np.nan]
FINITE = [0.0, -30.0, -2.5, -1e-3, 1e-3, 0.75, 4.0, 30.0]
PARAMS = {'leaky_relu': [0.01, 0.0, -0.5, 1.5], 'elu': [1.0, 0.0, -0.5]}


def activation_cases():
    for name, a in ACTIVATIONS.items():
        for p in PARAMS.get(name, [None]):
            for dtype in (F32, F64): yield pytest.param(name, p, dtype, id=f"{name}({p})-{np.dtype(dtype).name}")


def numpy_fn(name, p):
    a = ACTIVATIONS[name]
    return (lambda x: a.fn(x, p)) if a.param else a.fn, (lambda x: a.grad(x, p)) if a.param else a.grad


def layer_of(name, p):
    a = ACTIVATIONS[name]
    return a.layer(p) if a.param else a.layer()


def tol(dtype):
    """Kernel against NumPy on finite values: both round each operation; the kernels may use fast-math approximations of
    exp and log (LLVM 'afn') and, in float32, a rational tanh within 5 ulp: 16 ulp of the result, and 16 eps absolute
    (results near 0, e.g. the sigmoid of -30 whose tiny value the kernel may flush)"""
    eps = np.finfo(dtype).eps
    return dict(rtol=16 * eps, atol=16 * eps)


@pytest.mark.parametrize('name, p, dtype', list(activation_cases()))
def test_activation_kernels_agree_with_numpy_on_special_values(name, p, dtype):
    "Plain layer (kernel) against lesson 04's NumPy function and derivative: identical at -inf, inf, NaN and 0"
    f, df = numpy_fn(name, p)
    x = np.array(SPECIAL + FINITE, dtype)
    layer = layer_of(name, p)
    y = layer(x)
    dout = np.ones_like(x)
    dx = layer.backward(dout)
    k = len(SPECIAL)
    with np.errstate(all='ignore'):
        want_y, want_dx = f(x).astype(dtype), df(x).astype(dtype)
    np.testing.assert_array_equal(y[:k], want_y[:k], err_msg=f"{name}({p}) at {SPECIAL}")
    np.testing.assert_array_equal(dx[:k], want_dx[:k], err_msg=f"{name}'({p}) at {SPECIAL}")
    np.testing.assert_allclose(y[k:], want_y[k:], **tol(dtype), err_msg=f"{name}({p}) at {FINITE}")
    np.testing.assert_allclose(dx[k:], want_dx[k:], **tol(dtype), err_msg=f"{name}'({p}) at {FINITE}")


def special_maps(dtype):
    "Two 6x6 maps whose 2x2 windows hold -inf, inf, NaN and 0 alone, with each other, and with finite values"
    v = np.array(SPECIAL + FINITE + [1.0], dtype)            # 12 values
    rng = np.random.default_rng(5)
    maps = np.stack([rng.permutation(np.concatenate([v, v, v])).reshape(6, 6) for _ in range(2)])
    maps[0, :2, :2] = -np.inf; maps[0, :2, 2:4] = [[-np.inf, 0.], [-1., -3.]]; maps[1, 4:, 4:] = np.nan
    return maps[:, None]                                      # (N=2, C=1, 6, 6)


def pool_numpy(a, pool):
    "2x2 pooling with stride 2 in NumPy: np.max (NaN wins) or the mean"
    N, C, H, W = a.shape
    w = a.reshape(N, C, H // 2, 2, W // 2, 2)
    return w.max((3, 5)) if pool == 'max' else w.mean((3, 5))


@pytest.mark.parametrize('pool', ['max', 'avg'])
@pytest.mark.parametrize('name, p, dtype', list(activation_cases()))
def test_fused_activation_agrees_with_the_layers_and_numpy_on_special_values(name, p, dtype, pool):
    """conv (1x1, weight 1: z = x) -> activation -> 2x2 pooling: the fused step, the layers one by one and NumPy give the
    same values where -inf, inf and NaN meet (NaN where NumPy's gives NaN), and the same gradients"""
    x = special_maps(dtype)
    f, _ = numpy_fn(name, p)
    conv = dl.Conv2d(1, 1, 1, bias=False, dtype=dtype)
    conv.weight.data[...] = 1
    seq = dl.Sequential(conv, layer_of(name, p), (dl.MaxPool2d if pool == 'max' else dl.AvgPool2d)(2))
    with np.errstate(all='ignore'): want = pool_numpy(f(x).astype(dtype), pool)
    dout = np.random.default_rng(1).normal(size=want.shape).astype(dtype)
    results = {}
    for fused in (True, False):
        with fusion(fused):
            conv.zero_grad()
            y = seq(x)
            results[fused] = (y, seq.backward(dout), conv.weight.grad.copy())
            assert (type(seq._steps[0]) is ConvActPool) == (fused and layer_of(name, p).monotonic)
    for fused, (y, dx, dw) in results.items():
        np.testing.assert_allclose(y, want, **tol(dtype), err_msg=f"fused={fused}: output")
    (y, dx, dw), (y0, dx0, dw0) = results[True], results[False]
    number = ~np.isnan(dx0)                    # wherever the layers' input gradient is a number, the same number
    np.testing.assert_allclose(dx[number], dx0[number], **tol(dtype), err_msg='input gradient, fused against the layers')
    # NaN only where the layers have NaN. Where a max-pooling window holds several NaN, the layers give NaN at all of them
    # (the pooling passes 0 to the others, and 0 * act'(NaN) is NaN), the fused step at the one its maximum came from
    assert not (np.isnan(dx) & ~np.isnan(dx0)).any()
    if pool == 'avg': np.testing.assert_array_equal(np.isnan(dx), np.isnan(dx0))
    np.testing.assert_allclose(dw, dw0, **tol(dtype), err_msg='weight gradient, fused against the layers')


@pytest.mark.parametrize('cls, p', [(dl.LeakyReLU, -0.5), (dl.LeakyReLU, 1.5), (dl.ELU, -0.5), (dl.ELU, 2.0)])
def test_activation_gradients_with_any_parameter(cls, p):
    "Leaky ReLU and ELU with a negative parameter (y > 0 where x < 0): the derivative follows x, as lesson 04's"
    x = np.array([-2., -0.5, 0.5, 2.])
    layer = cls(p)
    layer(x)
    name = 'leaky_relu' if cls is dl.LeakyReLU else 'elu'
    np.testing.assert_allclose(layer.backward(np.ones(4)), numpy_fn(name, p)[1](x), rtol=1e-13)   # α e^x = y + α: a few eps
    assert dl.grad_check(cls(p), x[None]).max < 1e-7


# ------------------------------------------------------------------------- parameters replaced: a child process
def run_reliability_child(report):
    """Run every case of reliability_child with Numba's bounds checks on (an array too small for a kernel then raises an
    IndexError, reported as 'leaked', instead of reading or writing past it), kernels compiled into a private cache; a
    crash ends that case as 'crashed' and the child is restarted after it"""
    results, todo = {}, list(reliability_child.CASES)
    running = Path(str(report) + '.running')
    env = compiled_env(NUMBA_BOUNDSCHECK='1', NUMBA_CACHE_DIR=str(report.parent / 'numba-cache'))
    while todo:
        r = subprocess.run([sys.executable, str(HERE / 'reliability_child.py'), str(report), *todo], capture_output=True,
                           text=True, env=env, timeout=900)
        for line in report.read_text().splitlines():
            d = json.loads(line); results[d['case']] = d
        todo = [n for n in todo if n not in results]
        if r.returncode != 0:
            crashed = running.read_text() if running.exists() else ''
            results[crashed or '(child)'] = {'case': crashed, 'outcome': 'crashed', 'message': r.stderr[-2000:]}
            todo = [n for n in todo if n != crashed]
            if not crashed: break
    return results


@pytest.fixture(scope='module')
def replaced(tmp_path_factory):
    return run_reliability_child(tmp_path_factory.mktemp('reliability') / 'report.jsonl')


def test_the_fused_cases_use_the_fused_step(replaced):
    assert replaced['(fused step used)']['outcome'] == 'same'


@pytest.mark.parametrize('case', list(reliability_child.CASES))
def test_replaced_parameters_are_checked(replaced, case):
    "A parameter, buffer or gradient replaced by the user: a ValueError or TypeError naming it, or the unchanged result"
    layer, arr, when, _, expect = reliability_child.CASES[case]
    r = replaced.get(case)
    assert r is not None, f"{case} did not run: {replaced.get('(child)')}"
    if expect == 'same':
        assert r['outcome'] == 'same', r
        return
    assert r['outcome'] == 'refused', r
    arrays = reliability_child.LAYERS[layer][3]
    # a weight of another dtype makes the layer's dtype disagree with its input or its other arrays: either may be named
    named = ([arr] if not (arr == 'weight' and when == 'before' and 'float64' in case) else [*arrays, 'x'])
    assert any(n in r['message'] for n in named), r


# ------------------------------------------------------------------- a hostile user's arguments, beyond the parameters
def maps(*shape, dtype=F32, seed=0): return np.random.default_rng(seed).normal(size=shape).astype(dtype)


@pytest.mark.parametrize('pool', [dl.max_pool2d, dl.avg_pool2d, dl.sum_pool2d])
def test_pooling_window_beyond_int64(pool):
    """A stride longer than the padded input gives one output row or column however long it is (was an OverflowError from
    the kernel call beyond 2**63); a padding so large that the padded maps exceed int32 indices is refused, naming it"""
    x = maps(2, 3, 5, 6)
    for huge in (2**40, 2**63, 2**70):
        np.testing.assert_array_equal(pool(x, 2, (huge, 1)), pool(x, 2, (5, 1)))
        np.testing.assert_array_equal(pool(x, (1, 3), (2, huge)), pool(x, (1, 3), (2, 6)))
    for k in (2**31, 2**40, 2**64):
        with pytest.raises(ValueError, match=r"padding \(\d+, \d+\) is too large: x's padded maps"): pool(x, k, 1, k // 2)
    np.testing.assert_array_equal(dl.conv2d(x, maps(2, 3, 2, 2), stride=2**70), dl.conv2d(x, maps(2, 3, 2, 2), stride=5))


def test_pooling_layer_with_a_huge_stride_runs_backward():
    x, dout = maps(2, 3, 5, 6), maps(2, 3, 1, 3, seed=1)
    for cls in (dl.MaxPool2d, dl.AvgPool2d, dl.SumPool2d):
        huge, fit = cls(2, (2**70, 2)), cls(2, (5, 2))
        np.testing.assert_array_equal(huge(x), fit(x))
        np.testing.assert_array_equal(huge.backward(dout), fit.backward(dout))
        assert huge.floored and fit.floored


def test_local_response_norm_window_wider_than_the_channels():
    """A window of 10**12 (or 2**70) channels covers every channel, at the cost of a window of 2C - 1 (was a Python loop
    over every offset of the window: a hang); values and gradients as the formula with the sum over all channels"""
    x = maps(2, 3, 2, 2, dtype=F64)
    for size in (10**12, 2**70):
        lrn = dl.LocalResponseNorm(size, alpha=size * 1e-2, beta=0.75, k=2.0)       # α/n = 0.01
        want = x * (2.0 + 0.01 * (x * x).sum(1, keepdims=True)) ** -0.75
        np.testing.assert_allclose(lrn(x), want, rtol=1e-13)
        assert dl.grad_check(lrn, x).max < 1e-7


HYPER = {   # layer, input shape, attribute, a value set after construction, what the forward pass says
    'Dropout p=1': (lambda: dl.Dropout(0.5, rng=0), (2, 3), 'p', 1.0, r'p must be a number in \[0, 1\), got 1.0'),  # ZeroDivisionError
    'Dropout p=2': (lambda: dl.Dropout(0.5, rng=0), (2, 3), 'p', 2.0, r'p must be a number in \[0, 1\)'),   # dropped everything
    'Dropout p str': (lambda: dl.Dropout(0.5, rng=0), (2, 3), 'p', '0.5', r'p must be a number in \[0, 1\), got .0\.5. \(str\)'),
    'LRN size 0': (lambda: dl.LocalResponseNorm(3), (1, 3, 2, 2), 'size', 0, 'size must be a positive integer'),  # ZeroDivision
    'LRN beta NaN': (lambda: dl.LocalResponseNorm(3), (1, 3, 2, 2), 'beta', np.nan, 'beta must be a number >= 0'),  # NaN out
    'LRN k 0': (lambda: dl.LocalResponseNorm(3), (1, 3, 2, 2), 'k', 0.0, 'k must be a positive number'),
    'BatchNorm2d eps<0': (lambda: dl.BatchNorm2d(3), (2, 3, 2, 2), 'eps', -1.0, 'eps must be a positive number'),   # NaN out
    'BatchNorm2d momentum 2': (lambda: dl.BatchNorm2d(3), (2, 3, 2, 2), 'momentum', 2.0, r'momentum must be a number in \[0, 1\]'),
    'LeakyReLU slope NaN': (lambda: dl.LeakyReLU(), (2, 3), 'negative_slope', np.nan, 'negative_slope must be a finite number'),
    'ELU alpha inf': (lambda: dl.ELU(), (2, 3), 'alpha', np.inf, 'alpha must be a finite number'),
    'Conv2d stride 0': (lambda: dl.Conv2d(1, 1, 3), (1, 1, 5, 5), 'stride', 0, 'stride must be an integer >= 1'),
    'Conv2d padding -1': (lambda: dl.Conv2d(1, 1, 3), (1, 1, 5, 5), 'padding', -1, 'padding must be an integer >= 0'),
    'Conv2d kernel_size (2, 2)': (lambda: dl.Conv2d(1, 1, 3), (1, 1, 5, 5), 'kernel_size', (2, 2),
                                  r'weight must have shape \(1, 1, 2, 2\)'),
    'MaxPool2d kernel_size 0': (lambda: dl.MaxPool2d(2), (1, 1, 4, 4), 'kernel_size', 0, 'kernel_size must be an integer >= 1'),
    'AvgPool2d padding 2': (lambda: dl.AvgPool2d(2), (1, 1, 4, 4), 'padding', 2, 'padding must be at most half of kernel_size'),
}


@pytest.mark.parametrize('name', list(HYPER))
def test_hyperparameters_set_after_construction_are_checked_again(name):
    "An attribute set after the constructor checked it: checked again by the forward pass, in the constructor's words"
    make, shape, attr, value, match = HYPER[name]
    layer = make()
    before = layer(maps(*shape))
    setattr(layer, attr, value)
    with pytest.raises((ValueError, TypeError), match=match): layer(maps(*shape))
    assert layer._out is before or np.array_equal(layer._out, before)      # the refused pass saved nothing


def test_window_attributes_set_as_one_number_work_as_a_pair():
    "conv.stride = 2 means (2, 2), as the constructor's stride=2 (was a TypeError 'cannot unpack non-iterable int')"
    x = maps(2, 1, 7, 7)
    for attr, value in (('stride', 2), ('padding', 1), ('kernel_size', 3)):
        conv, want = dl.Conv2d(1, 2, 3, rng=0), dl.Conv2d(1, 2, **{'kernel_size': 3, attr: value}, rng=0)
        setattr(conv, attr, value)
        np.testing.assert_array_equal(conv(x), want(x))
        assert conv.output_shape(x.shape) == want.output_shape(x.shape) and conv.floored == want.floored
    pool = dl.MaxPool2d(2)
    pool.stride = 1
    np.testing.assert_array_equal(pool(x), dl.max_pool2d(x, 2, 1))


def test_empty_maps_and_impossible_statistics_are_clear_errors():
    with pytest.raises(ValueError, match=r'x must have non-empty maps .* got shape \(1, 3, 0, 2\)'):   # was NaN + RuntimeWarning
        dl.GlobalAvgPool2d()(maps(1, 3, 0, 2))
    bn = dl.BatchNorm2d(3).eval()
    bn.running_var[1] = -5                                                       # e.g. from a hand-edited state
    with pytest.raises(ValueError, match=r'running_var must hold variances \(>= 0\), got -5.0'): bn(maps(2, 3, 2, 2))
    bn.running_var[1] = 0                                                         # a variance of 0 is one (eps keeps it finite)
    assert np.isfinite(bn(maps(2, 3, 2, 2))).all()


def test_flags_must_be_booleans():
    "A flag given as a string is refused instead of read as True ('no' is a non-empty string)"
    with pytest.raises(TypeError, match="mode must be True or False, got 'no'"): dl.Linear(2, 2).train('no')
    with pytest.raises(TypeError, match="return_indices must be True or False, got 'yes'"):
        dl.max_pool2d(maps(1, 1, 4, 4), 2, return_indices='yes')
    assert dl.Linear(2, 2).train(np.bool_(False)).training is False


def test_zero_dimensional_arrays_keep_their_shape():
    "A 0-d array stays 0-d through the elementwise layers (was silently made (1,)); layers that need axes say so"
    x = np.array(-1.5, F32)
    for layer in (dl.ReLU(), dl.Tanh(), dl.Sigmoid(), dl.Dropout(0.5).eval()):
        y = layer(x)
        assert np.shape(y) == () and np.shape(layer.backward(np.array(1.0, F32))) == ()
    np.testing.assert_array_equal(dl.ReLU()(x), 0.0)
    with pytest.raises(ValueError, match='x must have a batch dimension'): dl.Flatten()(x)
    with pytest.raises(ValueError, match='axis must be an axis of x'): dl.Softmax()(x)
    with pytest.raises(ValueError, match=r'x must have shape \(N, 2\) \(2-D\), got \(\)'): dl.Linear(2, 2)(x)
    assert dl.MSELoss()(np.array(1.0, F32), np.array(3.0, F32)) == 4.0


def test_summary_refuses_an_input_batch_beyond_memory():
    "summary runs the network on a batch: one too large for this machine is refused before it is allocated (was MemoryError)"
    with pytest.raises(ValueError, match=r"summary's input batch of shape \(1000000000000, 1, 28, 28\) .* would need"):
        dl.summary(dl.lenet5(rng=0), (10**12, 1, 28, 28))
    assert dl.summary(dl.lenet5(rng=0), (2, 1, 28, 28)).rows[-1].output_shape == (2, 10)


def test_fused_step_checks_the_activation_set_after_construction():
    "The fused convolution-activation-pooling step reads the activation's parameter as the layer does, checked"
    net = dl.Sequential(dl.Conv2d(1, 2, 3, dtype=F64, rng=0), dl.LeakyReLU(0.1), dl.MaxPool2d(2))
    x = maps(2, 1, 6, 6, dtype=F64)
    net(x)
    assert type(net._steps[0]) is ConvActPool
    for value, error in ((np.nan, ValueError), ('0.1', TypeError)):
        net[1].negative_slope = value
        with pytest.raises(error, match='negative_slope must be a finite number'): net(x)
    net[1].negative_slope = 0.2                                # a new slope is used by the fused step at once
    with fusion(False): want = net(x)
    np.testing.assert_allclose(net(x), want, rtol=1e-13, atol=1e-15)     # 9 products in another order: a few eps
    assert type(net._steps[0]) is ConvActPool


def test_init_functions_refuse_what_would_fill_non_finite_weights():
    "Arguments that gave NaN or inf weights silently (or OverflowError) are refused, naming them; w is left as it was"
    from dlcourse import init
    w = dl.Linear(3, 2, rng=0).weight
    before = w.data.copy()
    for call, error, match in [
            (lambda: init.uniform_(w, np.nan, 1.0), ValueError, 'a must be a finite number'),          # OverflowError
            (lambda: init.uniform_(w, 2.0, 1.0), ValueError, 'a and b must be bounds a <= b'),
            (lambda: init.uniform_(w, -1e308, 1e308), ValueError, 'of a finite width'),                 # OverflowError
            (lambda: init.uniform_(w, -1e300, 1e300), ValueError, "the values drawn overflow w's float32"),   # inf
            (lambda: init.normal_(w, 0.0, np.inf), ValueError, 'std must be a number >= 0'),            # inf and NaN
            (lambda: init.normal_(w, 1e300, 1.0), ValueError, "overflow w's float32"),                  # inf
            (lambda: init.kaiming_normal_(w, a=np.nan), ValueError, 'a must be a finite number'),       # NaN weights
            (lambda: init.calculate_gain('leaky_relu', 'x'), TypeError, 'param must be a finite number')]:
        with pytest.raises(error, match=match): call()
        np.testing.assert_array_equal(w.data, before)
    empty = np.zeros((3, 0), F32)                     # an empty weight: nothing to fill (was ZeroDivisionError)
    assert init.kaiming_normal_(empty) is empty and init.xavier_uniform_(np.zeros((0, 0))).shape == (0, 0)
