"""The invalid-input battery, run by tests/test_battery.py in a child process so that a crash fails a test
instead of killing the run.

Every public function and layer is described by an `Entry`: a callable and a spec of its arguments with valid values.
Hypothesis draws one argument at a time and a mutation of it (wrong ndim or shape, empty or zero-size batch, integer / bool
/ object / complex / float16 dtype, a list instead of an array, non-contiguous or read-only views, NaN and inf, absurd sizes,
wrong types for sizes and rates) and the call must either

- raise ValueError or TypeError with a message that names the argument ("invalid"), or
- return the same result as with the valid argument ("equivalent": non-contiguous and read-only views), or, where both are
  acceptable ("either"), raise as above or return a result that does not hide the problem (NaN/inf in gives NaN/inf out).

Anything else — another exception type (a Numba typing error, an IndexError, a MemoryError), a wrong result, a hang or a
crash — is a failure. Usage: python battery.py REPORT.jsonl [ENTRY_NAME...]; writes one JSON line per finished entry and the
name of the entry in progress to REPORT.jsonl.running.
"""
import json
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

import dlcourse as dl

F32 = np.float32


# ------------------------------------------------------------------ argument specs
class Arr:
    """An array argument. `fixed` lists the axes whose size the function constrains (default: the last one);
    `elementwise` functions accept any shape; `labels=C` makes it integer class indices in [0, C)"""
    def __init__(self, shape, dtype=F32, elementwise=False, labels=None, fixed=None, accepts='float', inplace=False):
        self.shape, self.dtype, self.elementwise, self.labels = tuple(shape), np.dtype(dtype), elementwise, labels
        self.inplace = inplace          # the function writes into this array: a read-only one must be refused
        self.accepts = accepts          # 'float' arrays only, also 'numeric' (integers), or 'any' dtype (a data loader)
        self.fixed = () if elementwise else (tuple(fixed) if fixed is not None else (len(shape) - 1,))

    def valid(self, rng):
        if self.labels is not None: return rng.integers(0, self.labels, self.shape)
        if self.dtype == np.uint8: return rng.integers(0, 256, self.shape).astype(np.uint8)
        return rng.normal(size=self.shape).astype(self.dtype)

    def mutations(self):
        m = ['int64', 'bool', 'object', 'complex', 'list', 'noncontig', 'readonly', 'ndim+1', 'scalar']
        if len(self.shape) > 1: m += ['ndim-1']
        if self.shape and self.fixed: m += ['shape']
        if self.shape: m += ['empty']
        if self.labels is not None: m += ['float-labels', 'out-of-range']
        elif self.dtype == np.uint8: m += ['float32']
        else: m += ['nan', 'inf', 'float16']
        return [k for k in m if not (k == 'int64' and self.labels is not None)]


class Int:
    """A size or count argument. `none_ok`: None is valid. `huge`: what 10**12 is — 'invalid' (a size that cannot be
    allocated), 'valid' (e.g. a batch size: one batch) or 'skip' (epochs: valid, but it would run for ever)"""
    def __init__(self, value, minimum=1, none_ok=False, huge='invalid'):
        self.value, self.minimum, self.none_ok, self.huge = value, minimum, none_ok, huge
    def valid(self, rng): return self.value
    def mutations(self):
        return ['float', 'str', 'bool', 'below'] + ([] if self.none_ok else ['none']) + ([] if self.huge == 'skip' else ['huge'])


class Num:
    "A real-valued hyper-parameter (learning rate, slope, noise)"
    def __init__(self, value, minimum=0.0, inclusive=False):
        self.value, self.minimum, self.inclusive = value, minimum, inclusive
    def valid(self, rng): return self.value
    def mutations(self): return ['nan', 'inf', 'str', 'none', 'below'] + ([] if self.minimum is None else [])


class Obj:
    "Any other argument: a fixed valid value, mutated into wrong types"
    def __init__(self, value, wrong=('str', 'none', 'int')):
        self.value, self.wrong = value, wrong
    def valid(self, rng): return self.value() if callable(self.value) else self.value
    def mutations(self): return list(self.wrong)


# ------------------------------------------------------------------ mutations
def mutate(spec, kind, value, rng):
    "Return (mutated value, expectation): 'invalid', 'equivalent' or 'either'"
    if isinstance(spec, Arr):
        value, expect = _mutate_array(spec, kind, value, rng)
        if expect == 'invalid' and (spec.accepts == 'any' and kind in ('int64', 'bool', 'object', 'complex', 'float32',
                                                                       'float-labels', 'out-of-range')
                                    or spec.accepts == 'numeric' and kind == 'int64'):
            expect = 'either'
        return value, expect
    return _mutate_other(spec, kind, value)


def _mutate_array(spec, kind, value, rng):
    if True:
        a = value
        if kind == 'int64': return np.ones(a.shape, np.int64), 'either' if spec.elementwise else 'invalid'
        if kind == 'float32': return a.astype(np.float32), 'invalid'
        if kind == 'bool': return np.ones(a.shape, bool), 'invalid'
        if kind == 'object': return a.astype(object), 'invalid'
        if kind == 'complex': return a.astype(np.complex128), 'invalid'
        if kind == 'float16': return a.astype(np.float16), 'either'
        if kind == 'list': return a.tolist(), 'either' if spec.elementwise else 'invalid'
        if kind == 'noncontig':
            big = np.repeat(a, 2, axis=-1) if a.ndim else a
            return (big[..., ::2] if a.ndim else a), 'equivalent'
        if kind == 'readonly':
            b = a.copy(); b.setflags(write=False); return b, 'invalid' if spec.inplace else 'equivalent'
        if kind == 'ndim+1': return a[None], 'either' if spec.elementwise else 'invalid'
        if kind == 'ndim-1': return a[0], 'either' if spec.elementwise else 'invalid'
        if kind == 'scalar': return a.reshape(-1)[:1].reshape(()), 'either' if spec.elementwise else 'invalid'
        if kind == 'shape':
            axis = spec.fixed[rng.integers(len(spec.fixed))]
            return np.concatenate([a, a.take([0], axis=axis)], axis=axis), 'invalid'
        if kind == 'empty': return a[:0], 'either'
        if kind == 'nan':
            b = a.copy(); b.reshape(-1)[rng.integers(b.size)] = np.nan; return b, 'either'
        if kind == 'inf':
            b = a.copy(); b.reshape(-1)[rng.integers(b.size)] = -np.inf; return b, 'either'
        if kind == 'float-labels': return a.astype(np.float64), 'invalid'
        if kind == 'out-of-range':
            b = a.copy(); b.reshape(-1)[0] = spec.labels; return b, 'invalid'
    raise AssertionError(kind)


def _mutate_other(spec, kind, value):
    if isinstance(spec, Int):
        return {'float': (spec.value + 0.5, 'invalid'), 'str': (str(spec.value), 'invalid'), 'none': (None, 'invalid'),
                'bool': (True, 'invalid'), 'below': (spec.minimum - 1, 'invalid'),
                'huge': (10 ** 12, 'invalid' if spec.huge == 'invalid' else 'either')}[kind]
    if isinstance(spec, Num):
        below = (spec.minimum - 1.0) if spec.minimum is not None else None
        return {'nan': (float('nan'), 'invalid'), 'inf': (float('inf'), 'invalid'), 'str': ('0.1', 'invalid'),
                'none': (None, 'invalid'), 'below': (below, 'invalid')}[kind]
    if isinstance(spec, Obj):
        return {'str': ('nonsense', 'invalid'), 'none': (None, 'invalid'), 'int': (3, 'invalid'),
                'float': (2.5, 'invalid')}[kind]
    raise AssertionError(kind)


def arrays_in(result):
    if isinstance(result, np.ndarray): yield result
    elif isinstance(result, (list, tuple)):
        for r in result: yield from arrays_in(r)
    elif isinstance(result, dict):
        for r in result.values(): yield from arrays_in(r)
    elif isinstance(result, (float, np.floating)): yield np.asarray(result)


def same(a, b):
    xs, ys = list(arrays_in(a)), list(arrays_in(b))
    return len(xs) == len(ys) and all(x.shape == y.shape and np.array_equal(x, y, equal_nan=True) for x, y in zip(xs, ys))


def nonfinite(result):
    return any(x.dtype.kind in 'fc' and not np.isfinite(x).all() for x in arrays_in(result))


def names_arg(name, message):
    "Does `message` name the argument? As a whole word, either case (x for X); longer names also inside words (d_out)"
    import re
    if len(name) > 1 and name.lower() in message.lower(): return True
    return re.search(rf'(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])', message, re.IGNORECASE) is not None


class Entry:
    "A public callable and its arguments; `names` maps an argument to the name its error messages use"
    def __init__(self, name, fn, names=None, nan_may_vanish=False, **args):
        self.name, self.fn, self.args, self.names = name, fn, args, {**{a: a for a in args}, **(names or {})}
        self.nan_may_vanish = nan_may_vanish       # documented: NaN maps to a number (e.g. relu_grad, as in PyTorch)
        self.cases = [(arg, kind) for arg, spec in args.items() for kind in spec.mutations()]


# ------------------------------------------------------------------ helpers to build stateful calls
def after_forward(make, x):
    "A module after one forward pass on x"
    m = make(); m(x); return m


def loss_after(loss, y, t):
    loss(y, t); return loss


def tiny_learner():
    dl.manual_seed(0)
    m = dl.Sequential(dl.Linear(4, 3))
    x, y = np.random.default_rng(0).normal(size=(8, 4)).astype(F32), np.arange(8) % 3
    return dl.learner.Learner(m, dl.CrossEntropyLoss(), dl.SGD(m.parameters(), lr=0.1), dl.DataLoader(x, y, 4, seed=0))


TMP = Path(tempfile.mkdtemp())


def checkpoint_path():
    p = TMP / 'ck.npz'
    if not p.exists(): dl.learner.save_checkpoint(p, dl.Sequential(dl.Linear(4, 3, rng=0)))
    return p


def idx_path():
    p = TMP / 'x.idx'
    if not p.exists(): dl.data.write_idx(p, np.zeros((2, 3, 3), np.uint8))
    return p




def fused_block(pool, weight=None):
    "Conv2d(2, 3, 3), ReLU and 2x2 pooling in a Sequential: its forward runs the fused kernel (weight: replaces the filters)"
    conv = dl.Conv2d(2, 3, 3, rng=0)
    if weight is not None: conv.weight.data = weight
    return dl.Sequential(conv, dl.ReLU(), (dl.MaxPool2d if pool == 'max' else dl.AvgPool2d)(2, 2))


def linear_with(weight):
    "Linear(5, 3) whose weight was replaced by `weight`"
    lin = dl.Linear(5, 3, rng=0)
    lin.weight.data = weight
    return lin


class _Drew(Exception):
    "Raised by StopRng at a constructor's first random draw: by then every argument was accepted"


class StopRng(np.random.Generator):
    """A generator that stops a constructor at its first random draw. The big networks (VGG-16: 138M weights) are too
    expensive to build 40 times: their entries check the arguments, which must all be validated before any weight exists"""
    def __init__(self): super().__init__(np.random.PCG64(0))
    def _stop(self, *args, **kwargs): raise _Drew
    uniform = normal = standard_normal = random = integers = _stop


def checked_only(build):
    "`build(**args, rng=StopRng())`: 'accepted' where it got as far as drawing the first weight"
    def fn(**args):
        try: return build(**args, rng=StopRng())
        except _Drew: return 'accepted'
    return fn


def conv_backward_sized(stride, padding):
    "conv2d_backward of a (1, 2, 6, 6) input and 3x3 filters, with a dout of the output's size where it is a sane one"
    dout_shape, ints = (1, 3, 3, 3), all(type(v) is int for v in (stride, padding))
    if ints and stride > 0 and 0 < (o := (6 - 3 + 2 * padding) // stride + 1) < 100: dout_shape = (1, 3, o, o)
    return dl.conv2d_backward(np.ones(dout_shape, F32), np.ones((1, 2, 6, 6), F32), np.ones((3, 2, 3, 3), F32),
                              stride=stride, padding=padding)


def lenet():
    return dl.lenet5(rng=0)


def tiny_resnet(): return dl.resnet18(num_classes=3, in_channels=1, small_input=True, width=2, rng=0)


def torch_lenet():
    return dl.to_torch(dl.lenet5(rng=0))


N = 4
# every public function and layer, with valid arguments (the battery mutates one at a time)
ENTRIES = [
    # core
    Entry('Parameter', lambda data: dl.Parameter(data), data=Arr((3, 2), elementwise=True)),
    Entry('as_float_dtype', lambda dtype: dl.as_float_dtype(dtype), dtype=Obj(np.float32, wrong=('str', 'none', 'int'))),
    Entry('manual_seed', lambda seed: dl.manual_seed(seed), seed=Int(0, minimum=0, huge='valid')),
    Entry('Sequential', lambda a, b: dl.Sequential(a, b), names={'a': 'layer 0', 'b': 'layer 1'},
          a=Obj(lambda: dl.Tanh()), b=Obj(lambda: dl.Linear(2, 2))),
    # activations, functional and layers
    *[Entry(f.__name__, (lambda f: lambda x: f(x))(f), x=Arr((N, 5), elementwise=True), nan_may_vanish=f is dl.relu_grad)
      for f in (dl.sigmoid, dl.tanh, dl.relu, dl.sigmoid_grad, dl.tanh_grad, dl.relu_grad, dl.softplus, dl.softplus_grad,
                dl.softmax, dl.log_softmax)],
    Entry('leaky_relu', lambda x, negative_slope: dl.leaky_relu(x, negative_slope), x=Arr((N, 5), elementwise=True),
          negative_slope=Num(0.1, minimum=None)),
    Entry('elu', lambda x, alpha: dl.elu(x, alpha), x=Arr((N, 5), elementwise=True), alpha=Num(1.0, minimum=None)),
    Entry('leaky_relu_grad', lambda x, negative_slope: dl.leaky_relu_grad(x, negative_slope), x=Arr((N, 5), elementwise=True),
          negative_slope=Num(0.1, minimum=None), nan_may_vanish=True),     # as relu_grad: α at NaN, as in PyTorch
    *[Entry(f'{cls.__name__}.forward', (lambda c: lambda x: c()(x))(cls), x=Arr((N, 5), elementwise=True))
      for cls in (dl.Sigmoid, dl.Tanh, dl.ReLU, dl.LeakyReLU, dl.ELU, dl.Softplus, dl.Softmax, dl.Flatten)],
    *[Entry(f'{cls.__name__}.backward', (lambda c: lambda dout: after_forward(c, np.ones((N, 5), F32)).backward(dout))(cls),
            dout=Arr((N, 5), fixed=(0, 1)))
      for cls in (dl.Sigmoid, dl.Tanh, dl.ReLU, dl.LeakyReLU, dl.ELU, dl.Softplus, dl.Softmax, dl.Flatten)],
    Entry('LeakyReLU()', lambda negative_slope: dl.LeakyReLU(negative_slope), negative_slope=Num(0.1, minimum=None)),
    # layers
    Entry('Linear()', lambda in_features, out_features: dl.Linear(in_features, out_features),
          in_features=Int(3), out_features=Int(2)),
    Entry('Linear(dtype)', lambda dtype: dl.Linear(3, 2, dtype=dtype), dtype=Obj(np.float64)),
    Entry('Linear.forward', lambda x: dl.Linear(5, 3, rng=0)(x), x=Arr((N, 5))),
    Entry('Linear.backward', lambda dout: after_forward(lambda: dl.Linear(5, 3, rng=0), np.ones((N, 5), F32)).backward(dout),
          dout=Arr((N, 3), fixed=(0, 1))),
    # losses
    Entry('MSELoss', lambda output, target: dl.MSELoss()(output, target), output=Arr((N, 3), fixed=(0, 1)),
          target=Arr((N, 3), fixed=(0, 1))),
    Entry('CrossEntropyLoss', lambda logits, target: dl.CrossEntropyLoss()(logits, target), logits=Arr((N, 3), fixed=(0,)),
          target=Arr((N,), labels=3, fixed=(0,))),
    Entry('cross_entropy', lambda logits, target: dl.cross_entropy(logits, target), logits=Arr((N, 3), fixed=(0,)),
          target=Arr((N,), labels=3, fixed=(0,))),
    Entry('Loss.backward', lambda dout: loss_after(dl.MSELoss(), np.ones((2, 2), F32), np.zeros((2, 2), F32)).backward(dout),
          dout=Num(1.0, minimum=None)),
    # gradient checking
    Entry('grad_check', lambda x, eps, n_checks: dl.grad_check(dl.Tanh(), x, eps=eps, n_checks=n_checks),
          x=Arr((2, 3), dtype=np.float64, elementwise=True), eps=Num(1e-6), n_checks=Int(3, none_ok=True, huge='valid')),
    # the sigmoid neuron and toy data
    Entry('SigmoidNeuron', lambda n_inputs: dl.SigmoidNeuron(n_inputs), n_inputs=Int(2)),
    Entry('SigmoidUnit', lambda n_inputs, scale: dl.SigmoidUnit(n_inputs, scale), n_inputs=Int(2),
          scale=Num(0.5, inclusive=True)),
    Entry('SigmoidNeuron.fit', lambda X, lr, epochs: dl.SigmoidNeuron(2, rng=0).fit(X, np.array([0., 1, 1, 0]), lr=lr, epochs=epochs,
                                                                                       rng=0),
          X=Arr((4, 2), dtype=np.float64, fixed=(0, 1), accepts='numeric'), lr=Num(0.5), epochs=Int(2, huge='skip')),
    Entry('make_separable', lambda n, margin: dl.make_separable(n, margin), n=Int(20), margin=Num(0.1, inclusive=True)),
    Entry('make_moons', lambda n, noise: dl.make_moons(n, noise), n=Int(20), noise=Num(0.1, inclusive=True)),
    Entry('make_spirals', lambda n, turns, noise: dl.make_spirals(n, turns, noise), n=Int(20), turns=Num(1.0, inclusive=True),
          noise=Num(0.1, inclusive=True)),
    # training
    Entry('gradient_descent', lambda X, T, lr, epochs, batch_size: dl.gradient_descent(dl.Linear(2, 1, rng=0), dl.MSELoss(), X, T,
                                                                                          lr=lr, epochs=epochs, batch_size=batch_size, rng=0),
          X=Arr((N, 2), fixed=(0, 1)), T=Arr((N, 1), fixed=(0, 1)), lr=Num(0.1), epochs=Int(2, huge='skip'), batch_size=Int(2, huge='valid', none_ok=True)),
    Entry('SGD', lambda lr, momentum, weight_decay: dl.SGD([dl.Parameter(np.ones(2))], lr=lr, momentum=momentum,
                                                           weight_decay=weight_decay),
          lr=Num(0.1), momentum=Num(0.9, inclusive=True), weight_decay=Num(0.0, inclusive=True)),
    Entry('Adam', lambda lr, beta1, beta2, eps, weight_decay: dl.Adam([dl.Parameter(np.ones(2))], lr=lr, betas=(beta1, beta2),
                                                                    eps=eps, weight_decay=weight_decay),
          names={'beta1': 'betas[0]', 'beta2': 'betas[1]'}, lr=Num(0.1), beta1=Num(0.9, inclusive=True),
          beta2=Num(0.999, inclusive=True), eps=Num(1e-8), weight_decay=Num(0.0, inclusive=True)),
    Entry('StepLR', lambda step_size, gamma: dl.StepLR(dl.SGD([dl.Parameter(np.ones(2))], lr=0.1), step_size, gamma),
          step_size=Int(2, huge='valid'), gamma=Num(0.1, inclusive=True)),
    Entry('CosineAnnealingLR', lambda T_max, eta_min: dl.CosineAnnealingLR(dl.SGD([dl.Parameter(np.ones(2))], lr=0.1), T_max, eta_min),
          T_max=Int(10, huge='valid'), eta_min=Num(0.0, inclusive=True)),
    Entry('accuracy', lambda output, target: dl.accuracy(output, target), output=Arr((N, 3), fixed=(0,)),
          target=Arr((N,), labels=3, fixed=(0,))),
    Entry('Learner.fit', lambda epochs: tiny_learner().fit(epochs, progress=False, log=False, plot=False), epochs=Int(1, huge='skip')),
    Entry('save_checkpoint', lambda model: dl.learner.save_checkpoint(TMP / 'out.npz', model), model=Obj(lambda: dl.Linear(2, 2))),
    Entry('load_checkpoint', lambda path, model: dl.learner.load_checkpoint(path, model),
          path=Obj(checkpoint_path, wrong=('none', 'int')), model=Obj(lambda: dl.Sequential(dl.Linear(4, 3)))),
    # initialisation
    Entry('uniform_parameter', lambda shape, fan_in, dtype: dl.uniform_parameter(shape, fan_in, dtype, 0, 'a weight'),
          shape=Obj((3, 2), wrong=('str', 'none', 'float')), fan_in=Int(2, huge='valid'), dtype=Obj(np.float32)),
    Entry('activation_of', lambda layer: dl.activation_of(layer), layer=Obj(lambda: dl.ReLU())),
    Entry('xavier_uniform_', lambda w, gain: dl.init.xavier_uniform_(w, gain, rng=0), w=Arr((3, 4), elementwise=True, inplace=True),
          gain=Num(1.0), nan_may_vanish=True),   # it overwrites w: NaN in, random weights out
    Entry('kaiming_normal_', lambda w: dl.init.kaiming_normal_(w, rng=0), w=Arr((3, 4, 2, 2), elementwise=True, inplace=True),
          nan_may_vanish=True),
    Entry('calculate_gain', lambda nonlinearity: dl.init.calculate_gain(nonlinearity), nonlinearity=Obj('tanh')),
    # data
    Entry('read_idx', lambda path: dl.read_idx(path), path=Obj(idx_path, wrong=('none', 'int'))),
    Entry('preprocess', lambda images: dl.preprocess(images), images=Arr((2, 28, 28), dtype=np.uint8, fixed=(1, 2))),
    Entry('DataLoader', lambda x, y, batch_size: list(dl.DataLoader(x, y, batch_size, seed=0)),
          x=Arr((6, 2), fixed=(0,), accepts='any'), y=Arr((6,), labels=3, fixed=(0,), accepts='any'),
          batch_size=Int(4, huge='valid')),
    Entry('normalize', lambda x: dl.data.normalize(x), x=Arr((N, 5), elementwise=True)),
    # convolution
    Entry('conv_output_size', lambda I, F, S, P: dl.conv_output_size(I, F, S, P),
          I=Int(7, huge='valid'), F=Int(3), S=Int(2, huge='valid'), P=Int(0, minimum=0, huge='valid')),
    Entry('conv2d', lambda x, w, b: dl.conv2d(x, w, b, stride=1, padding=1), x=Arr((2, 3, 6, 5), fixed=(1,)),
          w=Arr((4, 3, 3, 3), fixed=(0, 1)), b=Arr((4,))),
    Entry('conv2d(stride, padding)', lambda stride, padding: dl.conv2d(np.ones((1, 2, 6, 6), F32), np.ones((3, 2, 3, 3), F32),
                                                                       stride=stride, padding=padding),
          stride=Int(2, huge='valid'), padding=Int(1, minimum=0)),
    Entry('conv_remainder', lambda I, F, S, P: dl.conv_remainder(I, F, S, P),
          I=Int(7, huge='valid'), F=Int(3), S=Int(3, huge='valid'), P=Int(0, minimum=0, huge='valid')),
    Entry('conv2d_backward', lambda dout, x, w: dl.conv2d_backward(dout, x, w, stride=1, padding=1),
          dout=Arr((2, 4, 6, 5), fixed=(0, 1, 2, 3)), x=Arr((2, 3, 6, 5), fixed=(1,)), w=Arr((4, 3, 3, 3), fixed=(0, 1))),
    Entry('conv2d_backward(stride, padding)', conv_backward_sized, stride=Int(2, huge='valid'), padding=Int(1, minimum=0)),
    Entry('Conv2d()', lambda in_channels, out_channels, kernel_size: dl.Conv2d(in_channels, out_channels, kernel_size),
          in_channels=Int(2), out_channels=Int(3), kernel_size=Int(3)),
    Entry('Conv2d.forward', lambda x: dl.Conv2d(3, 4, 3, padding=1, rng=0)(x), x=Arr((2, 3, 6, 5), fixed=(1,))),
    Entry('Conv2d.backward', lambda dout: after_forward(lambda: dl.Conv2d(3, 4, 3, rng=0), np.ones((2, 3, 6, 5), F32)).backward(dout),
          dout=Arr((2, 4, 4, 3), fixed=(0, 1, 2, 3))),
    # pooling
    *[Entry(f.__name__, (lambda f: lambda x, kernel_size, stride: f(x, kernel_size, stride))(f), x=Arr((2, 3, 6, 5), fixed=()),
            kernel_size=Int(2), stride=Int(2, huge='valid', none_ok=True))
      for f in (dl.max_pool2d, dl.pool.sum_pool2d, dl.pool.avg_pool2d)],
    Entry('max_pool2d(padding)', lambda padding: dl.max_pool2d(np.ones((1, 1, 6, 6), F32), 3, 2, padding),
          padding=Int(1, minimum=0)),
    *[Entry(f'{cls.__name__}()', (lambda c: lambda kernel_size, stride: c(kernel_size, stride))(cls),
            kernel_size=Int(3, huge='valid'), stride=Int(2, huge='valid', none_ok=True))
      for cls in (dl.MaxPool2d, dl.SumPool2d, dl.AvgPool2d)],
    *[Entry(f'{cls.__name__}.forward', (lambda c: lambda x: c(2)(x))(cls), x=Arr((2, 3, 6, 5), fixed=()))
      for cls in (dl.MaxPool2d, dl.SumPool2d, dl.AvgPool2d)],
    *[Entry(f'{cls.__name__}.backward', (lambda c: lambda dout: after_forward(lambda: c(2), np.random.default_rng(0).normal(
            size=(2, 3, 6, 5)).astype(F32)).backward(dout))(cls), dout=Arr((2, 3, 3, 2), fixed=(0, 1, 2, 3)))
      for cls in (dl.MaxPool2d, dl.SumPool2d, dl.AvgPool2d)],
    Entry('pool_args', lambda kernel_size, stride, padding: dl.pool.pool_args(kernel_size, stride, padding),
          kernel_size=Int(3, huge='valid'), stride=Int(2, huge='valid', none_ok=True), padding=Int(1, minimum=0)),
    Entry('pool_output_shape', lambda input_shape: dl.pool.pool_output_shape(input_shape, 2),
          input_shape=Obj((1, 3, 8, 8), wrong=('str', 'none', 'int'))),
    # the zoo's layers
    Entry('LocalResponseNorm()', lambda size, alpha, beta, k: dl.LocalResponseNorm(size, alpha, beta, k),
          size=Int(5, huge='valid'), alpha=Num(1e-4, inclusive=True), beta=Num(0.75, inclusive=True), k=Num(2.0)),
    Entry('LocalResponseNorm.forward', lambda x: dl.LocalResponseNorm(3, alpha=0.5, k=2.0)(x), x=Arr((2, 5, 4, 3), fixed=())),
    Entry('LocalResponseNorm.backward', lambda dout: after_forward(lambda: dl.LocalResponseNorm(3, alpha=0.5, k=2.0),
                                                                  np.ones((2, 5, 4, 3), F32)).backward(dout),
          dout=Arr((2, 5, 4, 3), fixed=(0, 1, 2, 3))),
    Entry('Dropout()', lambda p: dl.Dropout(p), p=Num(0.5, inclusive=True)),
    Entry('Dropout.forward', lambda x: dl.Dropout(0.5, rng=0)(x), x=Arr((N, 6), elementwise=True)),
    Entry('Dropout.backward', lambda dout: after_forward(lambda: dl.Dropout(0.5, rng=0), np.ones((N, 6), F32)).backward(dout),
          dout=Arr((N, 6), fixed=(0, 1))),
    Entry('GlobalAvgPool2d.forward', lambda x: dl.GlobalAvgPool2d()(x), x=Arr((2, 3, 4, 5), fixed=())),
    Entry('GlobalAvgPool2d.backward', lambda dout: after_forward(dl.GlobalAvgPool2d, np.ones((2, 3, 4, 5), F32)).backward(dout),
          dout=Arr((2, 3, 1, 1), fixed=(0, 1, 2, 3))),
    Entry('BatchNorm2d()', lambda num_features, eps, momentum: dl.BatchNorm2d(num_features, eps, momentum),
          num_features=Int(3), eps=Num(1e-5), momentum=Num(0.1, inclusive=True)),
    Entry('BatchNorm2d(dtype)', lambda dtype: dl.BatchNorm2d(3, dtype=dtype), dtype=Obj(np.float64)),
    Entry('BatchNorm2d.forward', lambda x: dl.BatchNorm2d(3)(x), x=Arr((2, 3, 4, 5), fixed=(1,))),
    Entry('BatchNorm2d.forward(eval)', lambda x: dl.BatchNorm2d(3).eval()(x), x=Arr((2, 3, 4, 5), fixed=(1,))),
    Entry('BatchNorm2d.backward', lambda dout: after_forward(lambda: dl.BatchNorm2d(3), np.random.default_rng(0).normal(
          size=(2, 3, 4, 5)).astype(F32)).backward(dout), dout=Arr((2, 3, 4, 5), fixed=(0, 1, 2, 3))),
    Entry('Inception()', lambda in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, kernel5: dl.Inception(
          in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, kernel5=kernel5, rng=0),
          in_channels=Int(3), ch1x1=Int(2), ch3x3red=Int(2), ch3x3=Int(3), ch5x5red=Int(1), ch5x5=Int(2), pool_proj=Int(2),
          kernel5=Int(5)),
    Entry('Inception(dtype)', lambda dtype: dl.Inception(3, 2, 2, 3, 1, 2, 2, dtype=dtype, rng=0), dtype=Obj(np.float64)),
    Entry('Inception.forward', lambda x: dl.Inception(3, 2, 2, 3, 1, 2, 2, rng=0)(x), x=Arr((2, 3, 5, 5), fixed=(1,))),
    Entry('Inception.backward', lambda dout: after_forward(lambda: dl.Inception(3, 2, 2, 3, 1, 2, 2, rng=0),
                                                           np.ones((2, 3, 5, 5), F32)).backward(dout),
          dout=Arr((2, 9, 5, 5), fixed=(0, 1, 2, 3)), nan_may_vanish=True),   # every branch ends in ReLU: as BasicBlock
    Entry('BasicBlock()', lambda in_channels, out_channels, stride: dl.BasicBlock(in_channels, out_channels, stride, rng=0),
          in_channels=Int(3), out_channels=Int(4), stride=Int(2, huge='valid')),
    Entry('BasicBlock(dtype)', lambda dtype: dl.BasicBlock(3, 4, dtype=dtype, rng=0), dtype=Obj(np.float64)),
    Entry('BasicBlock.forward', lambda x: dl.BasicBlock(3, 4, 2, rng=0)(x), x=Arr((2, 3, 5, 5), fixed=(1,))),
    Entry('BasicBlock.backward', lambda dout: after_forward(lambda: dl.BasicBlock(3, 4, 2, rng=0), np.random.default_rng(0).normal(
          size=(2, 3, 5, 5)).astype(F32)).backward(dout), dout=Arr((2, 4, 3, 3), fixed=(0, 1, 2, 3)),
          nan_may_vanish=True),   # it ends in ReLU: a NaN gradient at an inactive unit is blocked (0), as in PyTorch
    # the zoo's networks: LeNet-5 and a narrow ResNet-18 are built and run, the big ones only have their arguments checked
    Entry('lenet5()', lambda num_classes, activation, pool, padding, dtype: dl.lenet5(num_classes, activation, pool, padding,
                                                                                      dtype=dtype, rng=0),
          num_classes=Int(10), activation=Obj('relu'), pool=Obj('avg'), padding=Int(2, minimum=0, huge='valid'),
          dtype=Obj(np.float64)),
    Entry('lenet5(rng)', lambda rng: dl.lenet5(rng=rng), rng=Obj(0, wrong=('str', 'float'))),
    Entry('lenet5.forward', lambda x: lenet()(x), x=Arr((2, 1, 28, 28), fixed=(1,))),
    Entry('lenet5.backward', lambda dout: after_forward(lenet, np.ones((2, 1, 28, 28), F32)).backward(dout),
          dout=Arr((2, 10), fixed=(0, 1))),
    Entry('alexnet()', lambda num_classes, dtype: checked_only(dl.alexnet)(num_classes=num_classes, dtype=dtype),
          num_classes=Int(1000), dtype=Obj(np.float32)),
    Entry('vgg16()', lambda num_classes, in_channels, dtype: checked_only(dl.vgg16)(num_classes=num_classes,
                                                                                     in_channels=in_channels, dtype=dtype),
          num_classes=Int(1000), in_channels=Int(3), dtype=Obj(np.float32)),
    Entry('googlenet()', lambda num_classes, in_channels, variant, dtype: checked_only(dl.googlenet)(
          num_classes=num_classes, in_channels=in_channels, variant=variant, dtype=dtype),
          num_classes=Int(1000), in_channels=Int(3), variant=Obj('torchvision'), dtype=Obj(np.float32)),
    Entry('resnet18()', lambda num_classes, in_channels, width, dtype: dl.resnet18(num_classes, in_channels, small_input=True,
                                                                                   width=width, dtype=dtype, rng=0),
          num_classes=Int(10), in_channels=Int(1), width=Int(2), dtype=Obj(np.float64)),
    Entry('resnet18(default)', lambda num_classes, width: checked_only(dl.resnet18)(num_classes=num_classes, width=width),
          num_classes=Int(1000), width=Int(64)),
    Entry('resnet18.forward', lambda x: tiny_resnet()(x), x=Arr((2, 1, 8, 8), fixed=(1,))),
    Entry('resnet18.backward', lambda dout: after_forward(tiny_resnet, np.random.default_rng(0).normal(
          size=(2, 1, 8, 8)).astype(F32)).backward(dout), dout=Arr((2, 3), fixed=(0, 1))),
    # summary
    Entry('summary', lambda model, input_shape: dl.summary(model, input_shape), model=Obj(lenet),
          input_shape=Obj((2, 1, 28, 28))),
    Entry('Summary', lambda rows: str(dl.Summary(rows)), rows=Obj(lambda: dl.summary(lenet(), (1, 1, 28, 28)).rows)),
    # interop with PyTorch
    Entry('to_torch', lambda model: dl.to_torch(model).state_dict(), model=Obj(lenet)),
    Entry('from_torch', lambda module, model: dl.from_torch(module, model).state_dict(), module=Obj(torch_lenet),
          model=Obj(lambda: dl.lenet5(rng=1), wrong=('str', 'int'))),
    # the fused layers (lesson 08b): a Sequential of convolution, activation and 2x2 pooling, with mutated inputs and weights
    *[Entry(f'fused.forward({pool})', (lambda pool: lambda x: fused_block(pool)(x))(pool), x=Arr((2, 2, 6, 7), fixed=(1,)))
      for pool in ('max', 'avg')],
    *[Entry(f'fused.backward({pool})', (lambda pool: lambda dout: after_forward(lambda: fused_block(pool), np.random.default_rng(
            0).normal(size=(2, 2, 6, 7)).astype(F32)).backward(dout))(pool), dout=Arr((2, 3, 2, 2), fixed=(0, 1, 2, 3)))
      for pool in ('max', 'avg')],
    *[Entry(f'fused.weight({pool})', (lambda pool: lambda weight: fused_block(pool, weight)(np.ones((2, 2, 6, 7), F32)))(pool),
            weight=Arr((3, 2, 3, 3), fixed=(0, 1, 2, 3))) for pool in ('max', 'avg')],
    Entry('Linear.weight', lambda weight: linear_with(weight)(np.ones((N, 5), F32)), weight=Arr((3, 5), fixed=(0, 1))),
]


# ------------------------------------------------------------------ running
def run_entry(entry, report, max_examples):
    failures, counts = [], {'invalid': 0, 'equivalent': 0, 'either': 0}
    rng0 = np.random.default_rng(0)
    valid = {k: spec.valid(rng0) for k, spec in entry.args.items()}

    def baseline():
        with warnings.catch_warnings(), np.errstate(all='ignore'):
            warnings.simplefilter('ignore')
            return entry.fn(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in valid.items()})
    base = baseline()

    def check_one(case, seed):
        arg, kind = case
        value, expect = mutate(entry.args[arg], kind, valid[arg], np.random.default_rng(seed))
        kwargs = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in valid.items()}
        kwargs[arg] = value
        counts[expect] += 1
        label = f"{entry.name}({arg}={kind})"
        try:
            with warnings.catch_warnings(), np.errstate(all='ignore'):
                warnings.simplefilter('ignore')
                result = entry.fn(**kwargs)
        except (ValueError, TypeError) as e:
            # a shape that no longer matches another argument may be reported under that argument's name
            named = [entry.names[arg]] if kind not in ('shape', 'empty') else list(entry.names.values())
            if expect == 'equivalent':
                failures.append(f"{label}: raised {type(e).__name__}: {e} (expected the valid result)")
            elif not any(names_arg(n, str(e)) for n in named):
                failures.append(f"{label}: {type(e).__name__} does not name {entry.names[arg]!r}: {e}")
            return
        except FileNotFoundError as e:
            if 'path' not in arg: failures.append(f"{label}: FileNotFoundError: {e}")
            return
        except Exception as e:                                   # noqa: BLE001 - every other exception is a failure
            failures.append(f"{label}: {type(e).__name__} leaked: {e}\n{traceback.format_exc(limit=-3)}")
            return
        if expect == 'invalid':
            failures.append(f"{label}: accepted an invalid value ({type(value).__name__})")
        elif expect == 'equivalent' and not same(result, base):
            failures.append(f"{label}: result differs from the result for the valid argument")
        elif (expect == 'either' and kind == 'nan' and not entry.nan_may_vanish and list(arrays_in(result))
              and not nonfinite(result)):
            failures.append(f"{label}: a NaN in the input vanished from the output")

    for case in entry.cases: check_one(case, 0)            # every mutation at least once

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=st.sampled_from(entry.cases), seed=st.integers(0, 2**16))
    def check(case, seed): check_one(case, seed)

    check()
    report.write(json.dumps({'entry': entry.name, 'cases': sum(counts.values()), 'counts': counts,
                             'failures': failures[:20], 'n_failures': len(failures)}) + '\n')
    report.flush()


def main(argv):
    out = Path(argv[0])
    names = set(argv[1:])
    max_examples = 30
    with open(out, 'a') as report:
        for entry in ENTRIES:
            if names and entry.name not in names: continue
            Path(str(out) + '.running').write_text(entry.name)
            start = time.perf_counter()
            run_entry(entry, report, max_examples)
            Path(str(out) + '.running').write_text('')


if __name__ == '__main__':
    main(sys.argv[1:])
