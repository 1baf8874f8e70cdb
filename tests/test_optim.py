"""SGD against torch.optim.SGD over several steps; initialisers against torch.nn.init's formulas."""
import math
import re

import numpy as np
import pytest
from hypothesis import given, strategies as st

import dlcourse as dl
from dlcourse import init
from dlcourse.core import Parameter
from dlcourse.optim import SGD


@given(momentum=st.sampled_from([0.0, 0.5, 0.9]), nesterov=st.booleans(), weight_decay=st.sampled_from([0.0, 1e-3, 0.1]),
       dampening=st.sampled_from([0.0, 0.3]), lr=st.sampled_from([0.01, 0.3]), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_sgd_matches_torch(torch, momentum, nesterov, weight_decay, dampening, lr, dtype, seed):
    if nesterov and (momentum == 0 or dampening): nesterov = False
    rng = np.random.default_rng(seed)
    shapes = [(4, 3), (4,), (2, 1, 3, 3)]
    ours = [dl.Parameter(rng.normal(size=s).astype(dtype)) for s in shapes]
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    opt = SGD(ours, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, dampening=dampening)
    topt = torch.optim.SGD(theirs, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, dampening=dampening)
    for _ in range(5):
        for p, t in zip(ours, theirs):
            g = rng.normal(size=p.shape).astype(dtype)
            p.grad[...] = g
            t.grad = torch.tensor(g)
        opt.step(); topt.step()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for p, t in zip(ours, theirs):
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, t.detach().numpy(), **tol)


def test_sgd_state_dict_round_trip():
    rng = np.random.default_rng(0)
    a = [dl.Parameter(rng.normal(size=(3, 2)))]
    b = [dl.Parameter(a[0].data.copy())]
    oa, ob = SGD(a, lr=0.1, momentum=0.9), SGD(b, lr=0.5)
    for _ in range(2):
        a[0].grad[...] = 1.0; oa.step()
    ob.load_state_dict(oa.state_dict()); b[0].data[...] = a[0].data
    for o, p in ((oa, a), (ob, b)):
        p[0].grad[...] = 0.5; o.step()
    np.testing.assert_array_equal(a[0].data, b[0].data)
    assert ob.lr == 0.1


@pytest.mark.parametrize('call,exc,fragment', [
    (lambda p: SGD(p, lr=-0.1), ValueError, 'lr must be a positive number'),
    (lambda p: SGD(p, lr=0.1, momentum=-1), ValueError, 'momentum must be a number >= 0'),
    (lambda p: SGD(p, lr=0.1, weight_decay=float('nan')), ValueError, 'weight_decay must be a number >= 0'),
    (lambda p: SGD(p + [np.ones(2)], lr=0.1), TypeError, 'params[1] must be a Parameter'),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, dampening=0.1), ValueError, 'nesterov'),
    (lambda p: SGD(p, lr=0.1).load_state_dict({'x': 1}), ValueError, 'state must be the dict returned'),
    (lambda p: SGD(p, lr=0.1).load_state_dict({'hyper': {}, 'state': {0: {'momentum_buffer': np.ones(5)}}}), ValueError,
     'has shape (5,), expected (2,)'),
])
def test_sgd_bad_input(call, exc, fragment):
    with pytest.raises(exc) as info:
        call([dl.Parameter(np.ones(2))])
    assert fragment in str(info.value)


@pytest.mark.parametrize('shape', [(300, 200), (64, 16, 5, 5)])
def test_initialisers_follow_torch_formulas(torch, shape):
    tw = torch.empty(shape)
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(tw)
    assert init.fan_in_and_fan_out(shape) == (fan_in, fan_out)
    w = np.empty(shape)
    for name in ('relu', 'tanh', 'sigmoid', 'linear'):
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    assert init.calculate_gain('leaky_relu', 0.2) == pytest.approx(torch.nn.init.calculate_gain('leaky_relu', 0.2))
    init.xavier_uniform_(w, gain=2.0, rng=0)
    bound = 2.0 * math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.98 * bound
    init.kaiming_uniform_(w, a=math.sqrt(5), rng=0)                      # PyTorch's default for Linear/Conv2d weights
    torch.nn.init.kaiming_uniform_(tw, a=math.sqrt(5))
    assert np.abs(w).max() == pytest.approx(float(tw.abs().max()), rel=0.02)
    assert np.abs(w).max() <= 1 / math.sqrt(fan_in) + 1e-12               # = the U(±1/sqrt(fan_in)) the layers use
    init.kaiming_normal_(w, nonlinearity='relu', mode='fan_out', rng=0)
    assert w.std() == pytest.approx(math.sqrt(2 / fan_out), rel=0.02)
    init.xavier_normal_(w, rng=0)
    assert w.std() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.02)


@pytest.mark.parametrize('make', ['SGD', 'Adam'])
def test_a_step_checks_what_a_user_replaced(make):
    "A gradient, a parameter's data or an optimizer state replaced by hand is refused before anything is updated"
    import dlcourse.optim as optim
    def fresh():
        w, b = Parameter(np.ones((2, 2), np.float32)), Parameter(np.zeros(2, np.float32))
        opt = getattr(optim, make)([w, b], lr=0.1, **({'momentum': 0.9} if make == 'SGD' else {}))
        w.grad[...] = 1; b.grad[...] = 1
        opt.step()                                                   # the state exists now
        return w, b, opt
    cases = [(lambda w, b, o: setattr(w, 'grad', np.ones((1, 2), np.float32)), 'params[0].grad must be'),   # broadcasts
             (lambda w, b, o: setattr(b, 'grad', np.ones(2, np.float64)), 'params[1]: its data has dtype float32 and its gradient float64'),
             (lambda w, b, o: setattr(w, 'data', w.data.astype(np.float64)), 'params[0]: its data has dtype float64'),
             (lambda w, b, o: setattr(w, 'grad', [[1.0, 1.0], [1.0, 1.0]]), 'params[0].grad must be'),
             (lambda w, b, o: w.data.setflags(write=False), 'params[0].data must be a writable'),
             (lambda w, b, o: o.state[1].update({k: np.ones(3, np.float32) for k in o.state[1]}), 'optimizer state')]
    for spoil, fragment in cases:
        w, b, opt = fresh()
        spoil(w, b, opt)
        before = [w.data.copy(), b.data.copy()]
        with pytest.raises(ValueError, match=re.escape(fragment)): opt.step()
        np.testing.assert_array_equal(w.data, before[0]); np.testing.assert_array_equal(b.data, before[1])


def _sgd_run(fused, hyper, dtype, shapes, seed, steps=4, view=False):
    "The parameters after `steps` SGD steps with `hyper`, gradients drawn from `seed`; `view`: the first one's data a transposed view"
    rng = np.random.default_rng(seed)
    params = [Parameter(rng.normal(size=s).astype(dtype)) for s in shapes]
    if view:                                                   # a user's strided view: the step must still land in it
        base = np.ascontiguousarray(params[0].data.T)
        params[0].data = base.T
    opt = SGD(params, **hyper, fused=fused)
    for k in range(steps):
        for p in params: p.grad[...] = rng.normal(size=p.shape).astype(dtype)
        opt.step()
        if k == 1: opt.lr = hyper['lr'] / 3                     # a schedule changes the rate between steps
    return [p.data for p in params] + [v for i in sorted(opt.state) for v in opt.state[i].values()]


@pytest.mark.parametrize('hyper', [dict(lr=0.1), dict(lr=0.1, weight_decay=0.01), dict(lr=0.05, momentum=0.9),
                                   dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-3),
                                   dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.1)])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_the_fused_step_gives_the_bits_of_the_numpy_lines(hyper, dtype):
    "SGD(fused=True), one kernel per parameter, against the lesson's NumPy lines (fused=False): equal to the bit, in both"
    # dtypes, on parameters below and above the size from which the kernel runs in parallel, and on a strided view
    from dlcourse.kernels.config import SERIAL_VALUES
    shapes = [(7, 5), (3,), (SERIAL_VALUES // 64 + 3, 64 + 1), (2, 3, 3, 3)]
    for view in (False, True):
        fused, numpy_lines = _sgd_run(True, hyper, dtype, shapes, 1, view=view), _sgd_run(False, hyper, dtype, shapes, 1, view=view)
        assert len(fused) == len(numpy_lines) == len(shapes) * (2 if hyper.get('momentum') else 1)
        for a, b in zip(fused, numpy_lines):
            assert a.dtype == dtype and np.array_equal(a, b)


def test_the_fused_step_refuses_non_float_data_before_updating():
    "A parameter whose data and gradient a user replaced by integer arrays: refused, and nothing is updated"
    w, b = Parameter(np.ones(3, np.float32)), Parameter(np.ones(2, np.float32))
    opt = SGD([w, b], lr=0.1, momentum=0.9)
    b.data, b.grad = np.ones(2, np.int64), np.ones(2, np.int64)
    w.grad[...] = 1
    with pytest.raises(ValueError, match=re.escape('params[1].data must be a float32 or float64 array, got dtype int64')):
        opt.step()
    np.testing.assert_array_equal(w.data, 1)
    assert opt.state == {}
    with pytest.raises(TypeError, match='fused must be True or False'): SGD([w], lr=0.1, fused='yes')
