"""Lesson 08: the zoo's new layers (LocalResponseNorm, Dropout, BatchNorm2d, GlobalAvgPool2d, Inception, BasicBlock)
against PyTorch, the architectures' shapes and parameter counts against the lecture and torchvision, summary, and the
pretrained LeNet-5.

Big networks are built once (each test gets a copy: `cached`) and run at batch 1; parameter counts come from the
parameters, not from forward passes.
"""
import copy
import functools
import subprocess
from collections import OrderedDict
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

from conftest import TOL
from dlcourse import zoo
from dlcourse.activations import ReLU
from dlcourse.conv import Conv2d
from dlcourse.core import Sequential, manual_seed
from dlcourse.gradcheck import grad_check
from dlcourse.layers import Flatten, Linear
from dlcourse.zoo import BatchNorm2d, Dropout, GlobalAvgPool2d, LocalResponseNorm
from dlcourse.summary import Summary, SummaryRow, summary
from dlcourse.zoo import BasicBlock, Inception, alexnet, googlenet, lenet5, resnet18, vgg16


def _x(*shape, seed=1, scale=1.0): return np.random.default_rng(seed).normal(size=shape) * scale


class _FixedMaskDropout(Dropout):
    "Dropout drawing the same mask at every forward step, so that central differences see one function"
    def forward(self, x):
        self.rng = np.random.default_rng(7)
        return super().forward(x)


# name -> (module factory, float64 input, target); collected by test_gradcheck.py (< 1e-7)
GRAD_CASES = {
    'LocalResponseNorm': lambda: (LocalResponseNorm(3, alpha=1.0, beta=0.75, k=2.0), _x(2, 5, 3, 3, scale=2), None),
    'LocalResponseNorm-even': lambda: (LocalResponseNorm(4, alpha=0.5, beta=0.6, k=1.5), _x(2, 6, 2, 3, scale=2), None),
    'Dropout-eval': lambda: (Dropout(0.5).eval(), _x(4, 6), None),
    'Dropout-train': lambda: (_FixedMaskDropout(0.3), _x(4, 6), None),
    'BatchNorm2d': lambda: (BatchNorm2d(3), _x(4, 3, 3, 3, scale=2) + 1, None),
    'BatchNorm2d-eval': lambda: (_bn_eval(), _x(4, 3, 3, 3), None),
    'GlobalAvgPool2d': lambda: (GlobalAvgPool2d(), _x(2, 3, 4, 5), None),
    'Inception': lambda: (Inception(3, 2, 2, 3, 1, 2, 2, rng=0), _x(2, 3, 5, 5), None),
    'Inception-bn': lambda: (Inception(3, 2, 2, 3, 1, 2, 2, batch_norm=True, kernel5=3, rng=0), _x(2, 3, 4, 4), None),
    'BasicBlock': lambda: (BasicBlock(3, 3, rng=0), _x(2, 3, 4, 4), None),
    'BasicBlock-downsample': lambda: (BasicBlock(3, 4, stride=2, rng=0), _x(2, 3, 5, 5), None),
}


def _bn_eval():
    bn = BatchNorm2d(3)
    rng = np.random.default_rng(3)
    bn.running_mean[...] = rng.normal(size=3); bn.running_var[...] = rng.uniform(0.5, 2, 3)
    bn.weight.data[...] = rng.normal(size=3); bn.bias.data[...] = rng.normal(size=3)
    return bn.eval()


@functools.cache
def _built(name):
    return {'alexnet': lambda: alexnet(rng=0), 'vgg16': lambda: vgg16(rng=0), 'googlenet': lambda: googlenet(rng=0),
            'googlenet-tv': lambda: googlenet(variant='torchvision', rng=0), 'resnet18': lambda: resnet18(rng=0)}[name]()


def cached(name):
    "A big zoo model, built once per test session; every caller gets a copy of its own, whatever earlier tests did to theirs"
    return copy.deepcopy(_built(name))


def n_params(model): return sum(p.size for p in model.parameters())


@pytest.fixture(scope='module')
def ref(torch):
    import torchref
    return torchref


def _torch_grads(torch, module, x, g):
    "Output, input gradient and parameter gradients of a torch module for upstream gradient g"
    xt = torch.tensor(x, requires_grad=True)
    y = module(xt)
    y.backward(torch.tensor(g))
    return y.detach().numpy(), xt.grad.numpy(), {k: p.grad.numpy() for k, p in module.named_parameters()}


def _copy_into_torch(torch, model, module):
    "Copy a dlcourse model's state into a torch module of the same names (independent of dlcourse.interop)"
    state = {k: torch.tensor(v) for k, v in model.state_dict().items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith('num_batches_tracked') for k in missing), (missing, unexpected)


# ------------------------------------------------------------------------------------------------ the new layers
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@given(size=st.integers(1, 7), C=st.integers(1, 9), alpha=st.sampled_from([1e-4, 0.1, 1.0]),
       beta=st.sampled_from([0.5, 0.75, 1.3]), k=st.sampled_from([0.5, 1.0, 2.0]), seed=st.integers(0, 100))
def test_lrn_matches_torch(torch, dtype, size, C, alpha, beta, k, seed):
    x = _x(2, C, 3, 2, seed=seed, scale=3).astype(dtype)
    ours = LocalResponseNorm(size, alpha, beta, k)
    y = ours(x)
    g = _x(*y.shape, seed=seed + 1).astype(dtype)
    dx = ours.backward(g)
    yt, dxt, _ = _torch_grads(torch, torch.nn.LocalResponseNorm(size, alpha, beta, k), x, g)
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_allclose(y, yt, **TOL[dtype])
    np.testing.assert_allclose(dx, dxt, rtol=TOL[dtype]['rtol'] * 10, atol=TOL[dtype]['atol'] * 10)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('eps,momentum', [(1e-5, 0.1), (1e-3, 0.3)])
def test_batchnorm_matches_torch_in_training_and_evaluation(torch, dtype, eps, momentum):
    ours = BatchNorm2d(4, eps=eps, momentum=momentum, dtype=dtype)
    ref = torch.nn.BatchNorm2d(4, eps=eps, momentum=momentum).to(torch.float64 if dtype == np.float64 else torch.float32)
    rng = np.random.default_rng(0)
    ours.weight.data[...] = rng.normal(size=4); ours.bias.data[...] = rng.normal(size=4)
    with torch.no_grad(): ref.weight.copy_(torch.tensor(ours.weight.data)); ref.bias.copy_(torch.tensor(ours.bias.data))
    for step in range(3):                                     # running statistics follow PyTorch's over several steps
        x = (rng.normal(size=(5, 4, 3, 3)) * rng.uniform(0.5, 3, (1, 4, 1, 1)) + rng.normal(size=(1, 4, 1, 1))).astype(dtype)
        g = rng.normal(size=x.shape).astype(dtype)
        ref.zero_grad(); ours.zero_grad()
        y, dx = ours(x), ours.backward(g)
        yt, dxt, grads = _torch_grads(torch, ref, x, g)
        tol = dict(rtol=TOL[dtype]['rtol'] * 10, atol=TOL[dtype]['atol'] * 10)
        np.testing.assert_allclose(y, yt, **tol)
        np.testing.assert_allclose(dx, dxt, **tol)
        np.testing.assert_allclose(ours.weight.grad, grads['weight'], **tol)
        np.testing.assert_allclose(ours.bias.grad, grads['bias'], **tol)
        np.testing.assert_allclose(ours.running_mean, ref.running_mean.numpy(), **tol)
        np.testing.assert_allclose(ours.running_var, ref.running_var.numpy(), **tol)
    ours.eval(); ref.eval()
    y, dx = ours(x), ours.backward(g)
    yt, dxt, _ = _torch_grads(torch, ref, x, g)
    np.testing.assert_allclose(y, yt, **tol)
    np.testing.assert_allclose(dx, dxt, **tol)
    assert y.dtype == dx.dtype == ours.running_var.dtype == dtype


def test_batchnorm_state_and_dtype():
    bn = BatchNorm2d(3)
    assert list(bn.state_dict()) == ['weight', 'bias', 'running_mean', 'running_var']
    bn(_x(4, 3, 2, 2).astype(np.float32))
    bn.astype(np.float64)
    assert bn.running_mean.dtype == bn.weight.dtype == np.float64
    before = bn.running_mean.copy()
    bn.eval()(_x(4, 3, 2, 2))
    np.testing.assert_array_equal(bn.running_mean, before)          # evaluation leaves the statistics alone


def test_global_avg_pool_matches_torch(torch):
    x = _x(2, 3, 5, 4).astype(np.float32)
    ours = GlobalAvgPool2d()
    y = ours(x)
    g = _x(*y.shape, seed=2).astype(np.float32)
    yt, dxt, _ = _torch_grads(torch, torch.nn.AdaptiveAvgPool2d(1), x, g)
    np.testing.assert_allclose(y, yt, **TOL[np.float32])
    np.testing.assert_allclose(ours.backward(g), dxt, **TOL[np.float32])


def test_dropout_statistics_and_modes(torch):
    x = np.ones((200, 500), np.float32)
    d = Dropout(0.3, rng=0)
    y = d(x)
    dropped = (y == 0).mean()
    assert abs(dropped - 0.3) < 5 * np.sqrt(0.3 * 0.7 / x.size)            # binomial: 5 standard deviations
    np.testing.assert_allclose(y[y != 0], 1 / 0.7, rtol=1e-6)              # inverted dropout: as torch.nn.Dropout
    yt = torch.nn.Dropout(0.3)(torch.from_numpy(x)).numpy()
    assert set(np.unique(y)) == set(np.unique(yt))
    g = _x(*x.shape).astype(np.float32)
    np.testing.assert_array_equal(d.backward(g), g * y)                   # the forward step's mask, not a new one
    assert not np.array_equal(d(x), y)
    d.eval()
    assert d(x) is x and d.backward(g) is g
    d.train()
    torch_eval = torch.nn.Dropout(0.3).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(Dropout(0.3).eval()(x), torch_eval)
    assert Dropout(0.0)(x) is x


def test_dropout_follows_manual_seed():
    from dlcourse.core import manual_seed
    x = np.ones((4, 100), np.float32)
    manual_seed(3); a = Dropout()(x)
    manual_seed(3); b = Dropout()(x)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('batch_norm,kernel5', [(False, 5), (True, 3)])
@pytest.mark.parametrize('training', [True, False])
def test_inception_matches_torchvision_block(torch, ref, batch_norm, kernel5, training):
    ours = Inception(6, 3, 2, 4, 2, 3, 2, batch_norm=batch_norm, kernel5=kernel5, dtype=np.float64, rng=0)
    if batch_norm:
        module = ref.TVInception(6, 3, 2, 4, 2, 3, 2).double()
        for _, m in ours.named_modules():
            if isinstance(m, BatchNorm2d): m.running_mean[...] = 0.1; m.running_var[...] = 2.0
    else:   # the paper's block: convolutions with bias, ReLU, a 5x5 kernel; written here with torch.nn directly
        unit = lambda i, o, k: torch.nn.Sequential(OrderedDict(conv=torch.nn.Conv2d(i, o, k, padding=k // 2), relu=torch.nn.ReLU()))
        module = ref.TVInception(6, 3, 2, 4, 2, 3, 2).double()
        module.branch1 = unit(6, 3, 1)
        module.branch2 = torch.nn.Sequential(unit(6, 2, 1), unit(2, 4, 3))
        module.branch3 = torch.nn.Sequential(unit(6, 2, 1), unit(2, 3, 5))
        module.branch4 = torch.nn.Sequential(torch.nn.MaxPool2d(3, 1, 1), unit(6, 2, 1))
        module.double()
    _copy_into_torch(torch, ours, module)
    ours.train(training); module.train(training)
    x = _x(2, 6, 7, 7)
    y = ours(x)
    g = _x(*y.shape, seed=5)
    dx = ours.backward(g)
    yt, dxt, grads = _torch_grads(torch, module, x, g)
    assert y.shape == (2, 3 + 4 + 3 + 2, 7, 7)
    np.testing.assert_allclose(y, yt, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, dxt, rtol=1e-10, atol=1e-12)
    for name, p in ours.named_parameters(): np.testing.assert_allclose(p.grad, grads[name], rtol=1e-9, atol=1e-11, err_msg=name)


@pytest.mark.parametrize('cin,cout,stride', [(4, 4, 1), (4, 8, 2), (3, 5, 1)])
@pytest.mark.parametrize('training', [True, False])
def test_basic_block_matches_torchvision(torch, ref, cin, cout, stride, training):
    ours = BasicBlock(cin, cout, stride, dtype=np.float64, rng=0)
    rng = np.random.default_rng(1)
    for _, m in ours.named_modules():
        if isinstance(m, BatchNorm2d):
            m.weight.data[...] = rng.normal(size=cout); m.bias.data[...] = rng.normal(size=cout)
            m.running_mean[...] = rng.normal(size=cout); m.running_var[...] = rng.uniform(0.5, 2, cout)
    module = ref.TVBasicBlock(cin, cout, stride).double()
    _copy_into_torch(torch, ours, module)
    ours.train(training); module.train(training)
    x = _x(3, cin, 6, 6)
    y = ours(x)
    g = _x(*y.shape, seed=4)
    dx = ours.backward(g)
    yt, dxt, grads = _torch_grads(torch, module, x, g)
    np.testing.assert_allclose(y, yt, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, dxt, rtol=1e-10, atol=1e-12)
    for name, p in ours.named_parameters(): np.testing.assert_allclose(p.grad, grads[name], rtol=1e-9, atol=1e-11, err_msg=name)
    if training:
        for name, b in ours.named_buffers():
            np.testing.assert_allclose(b, module.get_buffer(name).numpy(), rtol=1e-12, err_msg=name)


# ------------------------------------------------------------------------------------------------ architectures
def test_parameter_counts():
    assert n_params(lenet5(rng=0)) == 61_706 == n_params(lenet5(padding=0, rng=0))
    assert n_params(cached('alexnet')) == 62_378_344
    assert n_params(cached('googlenet-tv')) == 6_624_904                   # torchvision, without auxiliary classifiers
    assert n_params(cached('googlenet')) == 6_998_552                      # the paper's: biases, no BN, 5x5 kernels
    assert n_params(cached('vgg16')) == 138_357_544
    assert n_params(cached('resnet18')) == 11_689_512


def test_torchvision_references_have_torchvision_counts_and_our_names(torch, ref):
    "The re-written torchvision models have torchvision's published counts, and exactly our parameter names and shapes"
    pairs = [(ref.on_meta(ref.TVGoogLeNet), cached('googlenet-tv'), 6_624_904),
             (ref.on_meta(ref.TVResNet18), cached('resnet18'), 11_689_512),
             (ref.on_meta(ref.tv_vgg16), cached('vgg16'), 138_357_544),
             (ref.on_meta(ref.ref_alexnet), cached('alexnet'), 62_378_344),
             (ref.on_meta(ref.ref_lenet5), lenet5(rng=0), 61_706)]
    for module, ours, count in pairs:
        assert ref.n_params(module) == count
        theirs = {k: tuple(v.shape) for k, v in module.state_dict().items() if not k.endswith('num_batches_tracked')}
        assert theirs == {k: v.shape for k, v in ours.state_dict().items()}


def forward_matches(torch, ours, module, x):
    "Our network and the torch module, the same weights copied into it, give the same output for x"
    _copy_into_torch(torch, ours, module)
    with torch.no_grad(): yt = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(x), yt, rtol=1e-4, atol=1e-5 * np.abs(yt).max())


def test_resnet18_matches_torchvision_forward(torch, ref):
    ours = cached('resnet18').eval()
    module = ref.TVResNet18().eval()
    forward_matches(torch, ours, module, _x(1, 3, 64, 64).astype(np.float32))


def test_googlenet_matches_reference_forward(torch, ref):
    "torchvision's GoogLeNet with ceil_mode pools replaced by padding 1, as dlcourse floors: the same function"
    ours = cached('googlenet-tv').eval()
    module = ref.TVGoogLeNet(ceil_mode=False).eval()
    forward_matches(torch, ours, module, _x(2, 3, 64, 64).astype(np.float32))


def test_alexnet_matches_reference_at_227(torch, ref):
    ours = cached('alexnet').eval()
    module = ref.ref_alexnet().eval()
    forward_matches(torch, ours, module, _x(1, 3, 227, 227).astype(np.float32))


def test_summary_reproduces_the_lecture_alexnet_table():
    s = summary(cached('alexnet'), (1, 3, 227, 227))
    lecture = [('input', (1, 3, 227, 227)), ('conv1', (1, 96, 55, 55)), ('pool1', (1, 96, 27, 27)), ('norm1', (1, 96, 27, 27)),
               ('conv2', (1, 256, 27, 27)), ('pool2', (1, 256, 13, 13)), ('norm2', (1, 256, 13, 13)),
               ('conv3', (1, 384, 13, 13)), ('conv4', (1, 384, 13, 13)), ('conv5', (1, 256, 13, 13)),
               ('pool3', (1, 256, 6, 6)), ('fc6', (1, 4096)), ('fc7', (1, 4096)), ('fc8', (1, 1000))]
    names = dict(lecture)
    assert [(r.name, r.output_shape) for r in s.rows if r.name in names] == lecture
    assert s.total_params == 62_378_344 and 'total params: 62,378,344' in str(s)
    assert [r.hwc for r in s.rows if r.name in ('conv1', 'pool3', 'fc6')] == ['[55x55x96]', '[6x6x256]', '[4096]']
    assert {r.name: r.params for r in s.rows}['conv1'] == 34_944
    assert s.floored == [] and all(isinstance(r, SummaryRow) for r in s)
    assert 'Conv2d 96 11x11, stride 4, pad 0' in str(s) and 'MaxPool2d 3x3, stride 2' in str(s)


def test_summary_marks_floored_layers_and_restores_modes():
    model = resnet18(num_classes=10, width=4, rng=0)
    bn_before = model.bn1.running_mean.copy()
    model.layer1.eval()
    s = summary(model, (2, 3, 64, 64))
    assert s.floored == ['conv1', 'maxpool', 'layer2.0', 'layer3.0', 'layer4.0']
    assert ' *' in str(s) and 'output size floored' in str(s)
    assert model.training and not model.layer1.training and model.layer2.training      # modes as they were
    np.testing.assert_array_equal(model.bn1.running_mean, bn_before)                    # no statistics update
    assert s.rows[-1].output_shape == (2, 10) and s.total_params == n_params(model)


def test_summary_of_googlenet_is_per_module():
    s = summary(cached('googlenet'), (1, 3, 224, 224))
    rows = {r.name: r for r in s.rows}
    assert rows['inception3a'].output_shape == (1, 256, 28, 28) and rows['inception5b'].hwc == '[7x7x1024]'
    assert rows['inception3a'].params == n_params(cached('googlenet').inception3a)
    assert rows['inception3a'].layer == 'Inception 64+128+32+32'
    assert s.total_params == 6_998_552 and 'conv1.conv' in rows


def test_summary_errors():
    with pytest.raises(ValueError, match="the layer after 'flatten' .* failed"): summary(cached('alexnet'), (1, 3, 224, 224))
    with pytest.raises(ValueError, match="the layer after 's4' .* failed"): summary(lenet5(padding=0, rng=0), (1, 1, 28, 28))
    with pytest.raises(ValueError, match='input_shape must be a tuple'): summary(lenet5(rng=0), (1, 1, 28.0, 28))
    with pytest.raises(ValueError, match='input_shape must be a tuple'): summary(lenet5(rng=0), ())
    with pytest.raises(TypeError, match='model must be a Module'): summary('lenet5', (1, 1, 28, 28))


def test_summary_of_a_plain_layer_and_float64():
    s = summary(Linear(3, 2, dtype=np.float64, rng=0), (4, 3))
    assert [r.output_shape for r in s.rows] == [(4, 3), (4, 2)] and s.rows[1].name == 'Linear' and s.total_params == 8
    assert isinstance(s, Summary) and len(s) == 2 and s[1].hwc == '[2]'


def test_lenet5_variants_and_shapes():
    x = _x(3, 1, 28, 28).astype(np.float32)
    for kw in ({}, dict(activation='relu', pool='max'), dict(activation='sigmoid', num_classes=26)):
        y = lenet5(rng=0, **kw)(x)
        assert y.shape == (3, kw.get('num_classes', 10)) and y.dtype == np.float32
    assert lenet5(padding=0, rng=0)(_x(2, 1, 32, 32).astype(np.float32)).shape == (2, 10)
    y64 = lenet5(dtype=np.float64, rng=0)(x.astype(np.float64))
    np.testing.assert_allclose(y64, lenet5(rng=0)(x), rtol=1e-4, atol=1e-5)             # same seed, same weights
    assert [n for n, _ in lenet5(rng=0).named_children()] == ['c1', 'act1', 's2', 'c3', 'act3', 's4', 'c5', 'act5',
                                                                'flatten', 'f6', 'act6', 'output']


def test_lenet5_trains_with_the_cli_builder():
    "dlcourse.cli builds 'lenet5' as zoo.lenet5(num_classes) for preprocessed (N, 1, 28, 28) float32 images; it trains fused"
    from dlcourse.cli import build_model
    from dlcourse.core import manual_seed
    from dlcourse.data import fashion_mnist_sample, preprocess
    from dlcourse.losses import CrossEntropyLoss
    from dlcourse.optim import SGD
    images, labels = fashion_mnist_sample('train')
    x, y = preprocess(images[:256]), labels[:256].astype(np.int64)
    manual_seed(0)
    model = build_model('lenet5', x, 10)
    assert n_params(model) == 61_706
    assert list(model.state_dict()) == list(lenet5().state_dict())
    model(x[:8])
    assert [type(s).__name__ for s in model._steps][:2] == ['ConvActPool', 'ConvActPool']
    loss_fn, opt = CrossEntropyLoss(), SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(20):
        losses.append(loss_fn(model(x), y))
        opt.zero_grad(); model.backward(loss_fn.backward()); opt.step()
    assert losses[-1] < 0.75 * losses[0]


def test_cli_trains_lenet5_on_the_sample(tmp_path):
    "`dlcourse train` (lesson 07) uses LeNet-5 for image data by default"
    r = subprocess.run([sys.executable, '-c', 'import sys; from dlcourse.cli import main; sys.exit(main())', 'train',
                        '--epochs', '1', '--out', str(tmp_path/'run'), '--quiet'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert 'model: lenet5, 61,706 parameters' in r.stdout
    final = next(l for l in r.stdout.splitlines() if l.startswith('final test accuracy'))
    assert float(final.split()[3].rstrip('%,')) > 65


def test_deeper_models_take_28x28_fashion_mnist():
    x = _x(2, 1, 28, 28).astype(np.float32)
    assert resnet18(10, in_channels=1, small_input=True, width=8, rng=0)(x).shape == (2, 10)
    assert googlenet(10, in_channels=1, rng=0).eval()(x).shape == (2, 10)


def test_train_and_eval_modes_of_the_zoo():
    model = googlenet(10, in_channels=1, rng=0)
    x = _x(2, 1, 32, 32).astype(np.float32)
    assert not np.array_equal(model(x), model(x))                       # dropout (and batch statistics) in training
    model.eval()
    np.testing.assert_array_equal(model(x), model(x))
    assert all(not m.training for _, m in model.named_modules())


def test_builders_validate_their_arguments():
    with pytest.raises(ValueError, match='num_classes must be a positive integer'): alexnet(0)
    with pytest.raises(ValueError, match='in_channels must be a positive integer'): vgg16(in_channels=0)
    with pytest.raises(ValueError, match="variant must be 'paper' or 'torchvision'"): googlenet(variant='v3')
    with pytest.raises(ValueError, match='width must be a positive integer'): resnet18(width=0)
    with pytest.raises(ValueError, match="activation must be one of"): lenet5(activation='gelu')
    with pytest.raises(ValueError, match="pool must be one of"): lenet5(pool='sum')
    with pytest.raises(TypeError, match='padding must be an integer >= 0'): lenet5(padding=1.5)
    with pytest.raises(TypeError, match='dtype must be float32 or float64'): lenet5(dtype=np.int32)
    with pytest.raises(ValueError, match='ch5x5 must be a positive integer'): Inception(3, 1, 1, 1, 1, 0, 1)
    with pytest.raises(ValueError, match='stride must be a positive integer'): BasicBlock(3, 3, stride=0)
    with pytest.raises(TypeError, match="layer 'x' must be a Module"): zoo.named(x=3)


def test_layers_validate_their_input():
    with pytest.raises(ValueError, match='C = in_channels = 3'): Inception(3, 1, 1, 1, 1, 1, 1, rng=0)(np.zeros((1, 4, 5, 5), np.float32))
    with pytest.raises(TypeError, match='expected float32'): BasicBlock(3, 3, rng=0)(np.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match='C = num_features = 3'): BatchNorm2d(3)(np.zeros((2, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match='more than one value per channel'): BatchNorm2d(3)(np.zeros((1, 3, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r'x must have shape \(N, C, H, W\)'): LocalResponseNorm(3)(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r'x must have shape \(N, C, H, W\)'): GlobalAvgPool2d()(np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match='numpy.ndarray'): Dropout()([1.0, 2.0])
    with pytest.raises(ValueError, match=r'p must be a number in \[0, 1\)'): Dropout(-0.1)
    with pytest.raises(ValueError, match='momentum must be a number in'): BatchNorm2d(3, momentum=2)
    with pytest.raises(ValueError, match='eps must be a positive number'): BatchNorm2d(3, eps=0)
    with pytest.raises(ValueError, match='alpha must be a number >= 0, got nan'): LocalResponseNorm(3, alpha=np.nan)
    for layer in (LocalResponseNorm(3), Dropout(), BatchNorm2d(3), GlobalAvgPool2d(), Inception(3, 1, 1, 1, 1, 1, 1, rng=0),
                  BasicBlock(3, 3, rng=0)):
        with pytest.raises(ValueError, match='before forward'): layer.backward(np.zeros((2, 3, 4, 4), np.float32))
    bn = BatchNorm2d(3)
    bn(np.ones((2, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match='dout must have shape'): bn.backward(np.ones((2, 3, 3, 3), np.float32))


# ------------------------------------------------------------------------------------------------ pretrained LeNet-5
def test_pretrained_lenet5_is_trained_and_checked():
    from dlcourse.data import fashion_mnist_sample, preprocess
    model = lenet5(pretrained=True).eval()
    x, y = fashion_mnist_sample('test')
    assert (model(preprocess(x)).argmax(1) == y).mean() > 0.88
    meta = model.pretrained
    assert meta['test_accuracy'] >= 0.91 and 'bench/train_fashion_mnist.py' in meta['command']
    assert lenet5(pretrained=True, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match='the pretrained LeNet-5 has the settings'): lenet5(pretrained=True, pool='avg')


def test_pretrained_file_is_verified(monkeypatch):
    entry = dict(zoo.PRETRAINED['lenet5'])
    monkeypatch.setitem(zoo.PRETRAINED, 'lenet5', entry | dict(sha256='0' * 64))
    with pytest.raises(ValueError, match='checksum mismatch'): lenet5(pretrained=True)
    monkeypatch.setitem(zoo.PRETRAINED, 'lenet5', entry | dict(file='missing.npz'))
    with pytest.raises(FileNotFoundError, match='missing.npz'): lenet5(pretrained=True)
    with pytest.raises(ValueError, match="name must be one of"): zoo.load_pretrained(lenet5(rng=0), 'alexnet')


def test_pretrained_weights_ship_with_the_package():
    "The weights are package data, documented with the command that made them"
    from importlib.resources import files
    data = files('dlcourse')/'data'
    assert (data/zoo.PRETRAINED['lenet5']['file']).is_file()
    assert 'bench/train_fashion_mnist.py' in (data/'README.md').read_text()


def test_importing_the_zoo_does_not_import_torch_or_matplotlib():
    code = "import sys, dlcourse.zoo, dlcourse.summary, dlcourse.interop; assert 'torch' not in sys.modules; " \
           "assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, '-c', code], check=True)


def test_ilsvrc_table():
    years = [r.year for r in zoo.ILSVRC_RESULTS]
    assert years == sorted(years) and zoo.ILSVRC_RESULTS[-1].top5 == 3.57
    assert {r.name: r.layers for r in zoo.ILSVRC_RESULTS}['GoogLeNet'] == 22


FIRST_LAYERS = {   # name -> (model, input shape): every kind of first step the zoo's networks start with
    'lenet5 (fused conv, tanh, pooling)': (lambda: lenet5(dtype=np.float64, rng=0), (3, 1, 28, 28)),
    'googlenet (conv block, 7x7 stride 2)': (lambda: googlenet(10, in_channels=1, dtype=np.float64, rng=0), (2, 1, 32, 32)),
    'googlenet-tv (conv, batch norm)': (lambda: googlenet(10, 3, variant='torchvision', dtype=np.float64, rng=0),
                                        (2, 3, 32, 32)),
    'resnet18 small stem (direct kernels)': (lambda: resnet18(10, 1, small_input=True, width=4, dtype=np.float64, rng=0),
                                             (3, 1, 28, 28)),
    'resnet18 (7x7 stride 2 stem)': (lambda: resnet18(10, 3, width=4, dtype=np.float64, rng=0), (2, 3, 32, 32)),
    'vgg16 small (3x3 same padding, 3 channels)': (lambda: vgg16(10, 3, small_input=True, width=4, dtype=np.float64, rng=0),
                                                   (2, 3, 32, 32)),
    'mlp (Linear first)': (lambda: Sequential(Flatten(), Linear(16, 5, dtype=np.float64, rng=0), ReLU(),
                                              Linear(5, 3, dtype=np.float64, rng=0)), (4, 1, 4, 4)),
}


@pytest.mark.parametrize('name', FIRST_LAYERS)
def test_backward_params_gives_the_parameter_gradients_of_backward(name):
    "A training step's backward (no gradient for the input) fills in every parameter's gradient as the full backward does"
    build, shape = FIRST_LAYERS[name]
    full = build()
    first, x = copy.deepcopy(full), _x(*shape)        # the same weights ...
    manual_seed(5); y = full(x)
    manual_seed(5); np.testing.assert_array_equal(first(x), y)   # ... and the same dropout masks
    g = _x(*y.shape, seed=2)
    assert full.backward(g).shape == x.shape
    assert first.backward_params(g) is None
    for (k, p), (_, q) in zip(full.named_parameters(), first.named_parameters()):
        # the same sums; only the first layer's may run in another order (scale: a float64 rounding of their size)
        np.testing.assert_allclose(q.grad, p.grad, rtol=0, atol=1e-12 * (1 + np.abs(p.grad).max()), err_msg=k)
