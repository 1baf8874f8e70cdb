"""Lesson 09: to_torch / from_torch for every zoo network: the same outputs both ways (up to the rounding differences a
network of that depth accumulates: conftest.rounding_tol), gradients, modes, dtypes, names compatible with torchvision's,
and clear errors (also when PyTorch is missing)."""
import sys

import numpy as np
import pytest

from dlcourse import activations as A
from dlcourse.conv import Conv2d
from dlcourse.core import Sequential
from dlcourse.layers import Flatten, Linear
from dlcourse.losses import Softmax
from dlcourse.zoo import BatchNorm2d, Dropout, GlobalAvgPool2d, LocalResponseNorm
from dlcourse.pool import AvgPool2d, MaxPool2d, SumPool2d
from dlcourse.zoo import BasicBlock, Inception, alexnet, googlenet, lenet5, resnet18
from conftest import assert_close
from test_zoo import _x, cached


def _randomise_buffers(model, seed=0):
    rng = np.random.default_rng(seed)
    for _, m in model.named_modules():
        if isinstance(m, BatchNorm2d):
            m.running_mean[...] = rng.normal(0, 0.1, m.num_features); m.running_var[...] = rng.uniform(0.5, 2, m.num_features)
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.num_features); m.bias.data[...] = rng.normal(0, 0.1, m.num_features)
    return model


# name: (model factory, input shape, depth: weight layers on the longest path): every network of the zoo, the big ones at
# batch 1 or on small images
ZOO = {
    'lenet5': (lambda: lenet5(rng=0), (3, 1, 28, 28), 5),
    'lenet5-relu-max-32': (lambda: lenet5(activation='relu', pool='max', padding=0, rng=0), (3, 1, 32, 32), 5),
    'alexnet': (lambda: cached('alexnet'), (1, 3, 227, 227), 8),
    'googlenet': (lambda: cached('googlenet'), (2, 3, 64, 64), 22),
    'googlenet-torchvision': (lambda: _randomise_buffers(cached('googlenet-tv')), (2, 3, 64, 64), 22),
    'resnet18': (lambda: _randomise_buffers(cached('resnet18')), (2, 3, 64, 64), 18),
    'resnet18-28x28': (lambda: _randomise_buffers(resnet18(10, 1, small_input=True, width=8, rng=0)), (2, 1, 28, 28), 18),
}


def _fan_in(model):
    "The longest sum of products in the forward pass: the largest fan-in of a convolution or linear layer"
    return max([m.in_channels * m.kernel_size[0] * m.kernel_size[1] for _, m in model.named_modules() if isinstance(m, Conv2d)]
               + [m.in_features for _, m in model.named_modules() if isinstance(m, Linear)] + [1])


def _close(got, want, model, depth, name, cond=1):
    "Equal up to the rounding differences `model` (`depth` layers deep, its longest sums) may accumulate: conftest.rounding_tol"
    assert_close(got, want, n=_fan_in(model), depth=depth, cond=cond, name=f"interop {name} {np.dtype(got.dtype).name}")


@pytest.mark.parametrize('name', ZOO)
def test_zoo_round_trip(torch, name):
    from dlcourse.interop import from_torch, to_torch
    build, shape, depth = ZOO[name]
    model = build().eval()
    x = _x(*shape).astype(np.float32)
    tm = to_torch(model)
    assert not tm.training and list(tm.state_dict()) == [k for k in tm.state_dict()]
    with torch.no_grad(): yt = tm(torch.from_numpy(x)).numpy()
    _close(model(x), yt, model, depth, name)                           # dlcourse -> torch
    with torch.no_grad():
        for p in tm.parameters(): p.mul_(1.05)                         # "trained" in PyTorch
    with torch.no_grad(): yt = tm(torch.from_numpy(x)).numpy()
    big = name == 'alexnet'                                             # building a second one would only cost time
    back = from_torch(tm, model) if big else from_torch(tm)             # torch -> dlcourse: into the model, or a new one
    _close(back(x), yt, model, depth, name)
    assert type(back) is Sequential and not back.training
    for k, v in tm.state_dict().items():
        if not k.endswith('num_batches_tracked'): np.testing.assert_array_equal(back.state_dict()[k], v.numpy())


def test_vgg16_round_trip_by_parts(torch):
    "VGG-16 at 224x224 costs seconds per forward pass: check every weight exactly, and each half on a cheaper input"
    from dlcourse.interop import from_torch, to_torch
    model = cached('vgg16').eval()
    tm = to_torch(model)
    for k, v in model.state_dict().items(): np.testing.assert_array_equal(tm.state_dict()[k].numpy(), v)
    x, z = _x(1, 3, 32, 32).astype(np.float32), _x(2, 512 * 7 * 7, seed=2).astype(np.float32)
    features = lambda m, x: _close(m.features(x), tm.features(torch.from_numpy(x)).numpy(), m.features, 13, 'vgg16 features')
    classifier = lambda m, z: _close(m.classifier(z), tm.classifier(torch.from_numpy(z)).numpy(), m.classifier, 3,
                                     'vgg16 classifier')
    with torch.no_grad():
        features(model, x)                                              # the convolutions take any size
        classifier(model, z)
        tm.classifier[6].weight.mul_(1.05)
        back = from_torch(tm, model)
        classifier(back, z)


@pytest.mark.parametrize('name', ['lenet5', 'googlenet-torchvision', 'resnet18-28x28'])
def test_training_mode_and_gradients_agree(torch, name):
    """In training mode (batch statistics, no dropout randomness compared) the outputs, all gradients and the updated
    running statistics agree. In float64: the test is about the mapping, and training-mode batch norm over the few values
    per channel of GoogLeNet's last layers (2 images of 2x2) amplifies rounding differences some 150-fold (hence cond),
    which in float32 leaves gradients that differ by ~1e-3 of their scale, more or less depending on the CPU"""
    from dlcourse.interop import from_torch, to_torch
    build, shape, depth = ZOO[name]
    model = build().astype(np.float64).train()
    for _, m in model.named_modules():
        if isinstance(m, Dropout): m.p = 0.0                            # dropout masks cannot be shared between frameworks
    model.zero_grad()
    tm = to_torch(model)
    assert tm.training and tm.get_parameter(next(k for k, _ in model.named_parameters())).dtype == torch.float64
    x = _x(*shape)
    y = model(x)
    g = _x(*y.shape, seed=3)
    dx = model.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = tm(xt)
    yt.backward(torch.from_numpy(g))
    close = lambda got, want: _close(got, want, model, depth, f'{name} training', cond=1000)   # see the docstring
    close(y, yt.detach())
    close(dx, xt.grad)
    grads = {k: p.grad for k, p in tm.named_parameters()}
    for k, p in model.named_parameters(): close(p.grad, grads[k])
    for k, b in model.named_buffers(): close(b, tm.get_buffer(k))       # running statistics updated alike
    back = from_torch(tm, model)
    assert back is model


def test_float64_is_exact(torch):
    from dlcourse.interop import from_torch, to_torch
    model = resnet18(10, 1, small_input=True, width=4, dtype=np.float64, rng=0).eval()
    tm = to_torch(model)
    assert tm.conv1.weight.dtype == torch.float64
    x = _x(2, 1, 16, 16)
    with torch.no_grad(): np.testing.assert_allclose(model(x), tm(torch.from_numpy(x)).numpy(), rtol=1e-11, atol=1e-12)
    assert from_torch(tm).dtype == np.float64


def test_every_layer_converts_both_ways(torch):
    from dlcourse.interop import from_torch, to_torch
    layers = Sequential(Conv2d(2, 4, 3, stride=(1, 2), padding=(1, 0), rng=0), A.LeakyReLU(0.2), SumPool2d(2, 1, 1),
                        A.ELU(0.5), AvgPool2d(3, 2, 1), A.Softplus(), LocalResponseNorm(3, 0.1, 0.5, 1.5), A.Sigmoid(),
                        MaxPool2d((2, 1), (1, 1)), BatchNorm2d(4), A.Tanh(), GlobalAvgPool2d(), Flatten(), Dropout(0.3),
                        Linear(4, 3, bias=False, rng=0), Softmax())
    _randomise_buffers(layers).eval()
    x = _x(2, 2, 7, 8).astype(np.float32)
    tm = to_torch(layers)
    with torch.no_grad(): yt = tm(torch.from_numpy(x)).numpy()
    _close(layers(x), yt, layers, len(layers.layers), 'every layer')
    back = from_torch(tm)
    _close(back(x), yt, layers, len(layers.layers), 'every layer')
    assert [type(m).__name__ for m in back.layers[:-1]] == [type(m).__name__ for m in layers.layers[:-1]]
    assert back[2].kernel_size == (2, 2) and back[8].kernel_size == (2, 1) and back[14].bias is None


def test_blocks_keep_their_configuration(torch):
    from dlcourse.interop import from_torch, to_torch
    inc = Inception(4, 2, 2, 3, 1, 2, 2, batch_norm=True, kernel5=3, rng=0)
    assert from_torch(to_torch(inc)).config == inc.config
    block = BasicBlock(3, 6, stride=2, rng=0)
    back = from_torch(to_torch(block))
    assert (back.in_channels, back.out_channels, back.stride) == (3, 6, 2) and back.downsample is not None
    assert from_torch(to_torch(BasicBlock(3, 3, rng=0))).downsample is None


def test_modes_are_mirrored_per_module(torch):
    from dlcourse.interop import from_torch, to_torch
    model = lenet5(rng=0)
    model.c1.eval()
    tm = to_torch(model)
    assert tm.training and not tm.c1.training and tm.c3.training
    tm.eval(); tm.f6.train()
    back = from_torch(tm, model)
    assert not back.training and back.f6.training and not back.c3.training


def test_torchvision_weights_load_by_name(torch):
    "Names follow torchvision: a torchvision-style ResNet-18 (or its state_dict) loads into resnet18() directly"
    import torchref
    from dlcourse.interop import from_torch
    tv = torchref.TVResNet18(num_classes=10, in_channels=1, small_input=True, width=4).eval()
    with torch.no_grad():
        for _, m in tv.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d): m.running_mean.normal_(0, 0.1); m.running_var.uniform_(0.5, 2)
    ours = from_torch(tv, resnet18(10, 1, small_input=True, width=4, rng=1))
    x = _x(2, 1, 28, 28).astype(np.float32)
    with torch.no_grad(): _close(ours.eval()(x), tv(torch.from_numpy(x)).numpy(), ours, 18, 'torchvision resnet18')


def test_errors(torch, monkeypatch):
    from dlcourse import interop
    with pytest.raises(TypeError, match='model must be a dlcourse Module'): interop.to_torch(torch.nn.ReLU())
    with pytest.raises(TypeError, match='module must be a torch.nn.Module'): interop.from_torch(lenet5(rng=0))
    with pytest.raises(TypeError, match='model must be a dlcourse Module or None'): interop.from_torch(torch.nn.ReLU(), 'x')
    with pytest.raises(TypeError, match='LSTM has no counterpart in dlcourse'): interop.from_torch(torch.nn.LSTM(2, 3))
    with pytest.raises(TypeError, match='no groups, dilation'): interop.from_torch(torch.nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(TypeError, match='counts the padding'): interop.from_torch(torch.nn.AvgPool2d(3, count_include_pad=False))
    with pytest.raises(TypeError, match='running averages'): interop.from_torch(torch.nn.BatchNorm2d(3, momentum=None))
    with pytest.raises(ValueError, match='state does not match'): interop.from_torch(torch.nn.Linear(3, 2), lenet5(rng=0))

    class Custom(A.ReLU): pass
    with pytest.raises(TypeError, match='Custom has no PyTorch counterpart'): interop.to_torch(Sequential(Custom()))


def test_a_clear_error_without_torch(monkeypatch):
    from dlcourse import interop
    monkeypatch.setitem(sys.modules, 'torch', None)                  # as if PyTorch were not installed
    with pytest.raises(ImportError, match='dlcourse.interop needs PyTorch, which is not installed: pip install torch'):
        interop.to_torch(lenet5(rng=0))
    with pytest.raises(ImportError, match='needs PyTorch'): interop.from_torch(object())
