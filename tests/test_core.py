"""The Module contract that every layer follows: parameters, accumulating gradients, train/eval, dtypes and state."""
import copy

import numpy as np
import pytest

import dlcourse as dl


def mlp(dtype=np.float32):
    return dl.Sequential(dl.Linear(4, 8, dtype=dtype, rng=0), dl.Tanh(), dl.Linear(8, 3, dtype=dtype, rng=1), dl.Sigmoid())


def test_parameters_are_stable_and_named_like_torch():
    m = mlp()
    names = [n for n, _ in m.named_parameters()]
    assert names == ['0.weight', '0.bias', '2.weight', '2.bias']
    assert [id(p) for p in m.parameters()] == [id(p) for p in m.parameters()]
    assert list(m.state_dict()) == names


def test_parameter_grad_matches_data():
    for p in mlp(np.float64).parameters():
        assert p.grad.shape == p.data.shape and p.grad.dtype == p.data.dtype == np.float64


def test_backward_accumulates_and_zero_grad_clears():
    m, x = mlp(), np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    g = np.ones((5, 3), np.float32)
    m(x); m.backward(g)
    once = [p.grad.copy() for p in m.parameters()]
    m(x); m.backward(g)
    for p, o in zip(m.parameters(), once): np.testing.assert_allclose(p.grad, 2 * o, rtol=1e-6)
    m.zero_grad()
    assert all((p.grad == 0).all() for p in m.parameters())


def test_train_eval_recursive():
    m = dl.Sequential(mlp(), dl.Sequential(dl.Tanh()))
    assert m.eval() is m
    assert not any(sub.training for _, sub in m.named_modules())
    m.train()
    assert all(sub.training for _, sub in m.named_modules())


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_dtypes(dtype):
    m = mlp(dtype)
    assert m.dtype == dtype and m(np.ones((2, 4), dtype)).dtype == dtype
    other = np.float64 if dtype == np.float32 else np.float32
    m.astype(other)
    assert m.dtype == other and all(p.grad.dtype == other for p in m.parameters())
    assert m(np.ones((2, 4), other)).dtype == other
    assert dl.Sigmoid()(np.ones(3, dtype)).dtype == dtype      # parameter-free: the input's dtype
    assert dl.Flatten()(np.ones((2, 2), dtype)).dtype == dtype


def test_state_dict_is_a_copy_and_round_trips():
    a, b = mlp(), mlp()
    for p in b.parameters(): p.data += 1
    state = a.state_dict()
    state['0.weight'][...] = 7                       # editing the copy does not touch the model
    assert not (a[0].weight.data == 7).any()
    b.load_state_dict(a.state_dict())
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(a(x), b(x))


def test_load_state_dict_converts_dtype_and_keeps_arrays():
    m = mlp(np.float32)
    w = m[0].weight.data
    m.load_state_dict({k: v.astype(np.float64) for k, v in mlp(np.float32).state_dict().items()})
    assert m[0].weight.data is w and w.dtype == np.float32   # copied in place: optimisers keep valid references


def test_load_state_dict_non_strict():
    m = mlp()
    m.load_state_dict({'0.bias': np.zeros(8)}, strict=False)
    assert (m[0].bias.data == 0).all()


def test_buffers_and_lists_of_modules():
    class Block(dl.Module):
        def __init__(self):
            super().__init__()
            self.branches = [dl.Linear(2, 2, rng=0), dl.Linear(2, 2, rng=1)]
            self.register_buffer('running_mean', np.zeros(2, np.float32))

    b = Block()
    assert list(b.state_dict()) == ['branches.0.weight', 'branches.0.bias', 'branches.1.weight', 'branches.1.bias',
                                    'running_mean']
    b.astype(np.float64)
    assert b.running_mean.dtype == np.float64
    b.load_state_dict({**b.state_dict(), 'running_mean': np.ones(2)})
    assert (b.running_mean == 1).all()


def test_deepcopy_is_independent():
    m = mlp()
    c = copy.deepcopy(m)
    c[0].weight.data += 1
    assert not np.allclose(c[0].weight.data, m[0].weight.data)


def test_sequential_container():
    m = mlp()
    assert len(m) == 4 and isinstance(m[0], dl.Linear) and len(m[1:]) == 3
    assert list(m) == m.layers
    m.append(dl.Flatten())
    assert len(m) == 5 and '4' in dict(m.named_children())
    assert 'Linear(in_features=4, out_features=8, bias=True)' in repr(m)


def test_manual_seed_reproducible_init():
    dl.manual_seed(42); a = dl.Linear(3, 3)
    dl.manual_seed(42); b = dl.Linear(3, 3)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)


def test_linear_init_matches_torch_default_range():
    w = dl.Linear(100, 50, rng=0).weight.data
    assert np.abs(w).max() <= 0.1 and np.abs(w).max() > 0.09


# ------------------------------------------------------------------ the argument validators every layer uses
from hypothesis import given, strategies as st

anything = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                     st.text(max_size=3), st.lists(st.integers(0, 3), max_size=3), st.tuples(st.integers(-2, 4), st.integers(-2, 4)))


@given(value=anything, low=st.one_of(st.none(), st.integers(-2, 2)), width=st.one_of(st.none(), st.integers(0, 3)),
       low_open=st.booleans(), high_open=st.booleans(), integer=st.booleans())
def test_check_number_returns_a_number_in_range_or_names_the_argument(value, low, width, low_open, high_open, integer):
    high = None if width is None or low is None else low + width
    try:
        got = dl.check_number(value, 'lr', low, high, low_open, high_open, integer)
    except (TypeError, ValueError) as e:
        assert str(e).startswith('lr must be ') and repr(value) in str(e)
        wrong_type = isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and isinstance(value, float))
        assert isinstance(e, TypeError) == wrong_type
        return
    assert type(got) is (int if integer else float) and got == value and np.isfinite(got)
    assert low is None or (got > low if low_open else got >= low)
    assert high is None or (got < high if high_open else got <= high)


@given(value=anything)
def test_the_other_validators_accept_exactly_what_they_promise(value):
    for check, ok in [(lambda v: dl.check_bool(v, 'flag'), lambda v: isinstance(v, bool)),
                      (lambda v: dl.check_choice(v, 'pool', ('max', 'avg')), lambda v: v in ('max', 'avg')),
                      (lambda v: dl.as_pair(v, 'stride'),
                       lambda v: (type(v) is int and v >= 1) or (isinstance(v, (tuple, list)) and len(v) == 2
                                                                 and all(type(e) is int and e >= 1 for e in v)))]:
        try: got = check(value)
        except (TypeError, ValueError) as e:
            assert not ok(value) and str(e).split()[0] in ('flag', 'pool', 'stride')
        else:
            assert ok(value), (value, got)
    with pytest.raises(TypeError, match='path must be a str or os.PathLike'): dl.as_path(3)
    assert dl.as_path('a/b').parts == ('a', 'b')
