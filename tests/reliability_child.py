"""Child process for tests/test_core_reliability.py: every layer with parameters, with its parameters, buffers and their
gradients replaced by a user (wrong shape or dtype, not a Parameter, non-contiguous, read-only), before the forward pass
or between the forward and the backward pass. Run in a child process because before these checks some of these cases
reached a Numba kernel with arrays too small for it: a crash, or memory silently overwritten. The test runs it with
NUMBA_BOUNDSCHECK=1, so that an array that still reached a kernel too small raises an IndexError instead.

    python reliability_child.py REPORT.jsonl [CASE ...]

writes one JSON line per finished case, {"case", "outcome", "message"}, and the case in progress to REPORT.jsonl.running.
Outcomes: 'refused' (ValueError or TypeError, with its message), 'same' (the result of the unchanged layer), 'different'
(a result other than the unchanged layer's), 'leaked' (another exception), 'grads-changed' (refused, but a gradient had
been written before the refusal).
"""
import json
import sys
from pathlib import Path

import numpy as np

import dlcourse as dl
from dlcourse.engine.fusion import ConvActPool

F32 = np.float32


def rng(): return np.random.default_rng(0)


# name: (build the model, input shape, the module whose parameters are changed (a function of the model), its arrays)
LAYERS = {
    'Linear': (lambda: dl.Linear(5, 3, rng=0), (4, 5), lambda m: m, ('weight', 'bias')),
    'Conv2d(direct)': (lambda: dl.Conv2d(2, 3, 3, rng=0), (2, 2, 7, 6), lambda m: m, ('weight', 'bias')),
    'Conv2d(im2col)': (lambda: dl.Conv2d(2, 3, 3, stride=2, padding=1, rng=0), (2, 2, 7, 6), lambda m: m, ('weight', 'bias')),
    'Conv2d(dense)': (lambda: dl.Conv2d(2, 3, (7, 6), rng=0), (2, 2, 7, 6), lambda m: m, ('weight', 'bias')),
    'fused(relu, max)': (lambda: dl.Sequential(dl.Conv2d(2, 3, 3, rng=0), dl.ReLU(), dl.MaxPool2d(2)), (2, 2, 7, 6),
                         lambda m: m[0], ('weight', 'bias')),
    'fused(tanh, avg)': (lambda: dl.Sequential(dl.Conv2d(2, 3, 3, rng=0), dl.Tanh(), dl.AvgPool2d(2)), (2, 2, 7, 6),
                         lambda m: m[0], ('weight', 'bias')),
    'fused(leaky, max, padded)': (lambda: dl.Sequential(dl.Conv2d(2, 3, 3, padding=1, bias=False, rng=0), dl.LeakyReLU(0.1),
                                                        dl.MaxPool2d(2)), (2, 2, 7, 6), lambda m: m[0], ('weight',)),
    'BatchNorm2d': (lambda: dl.BatchNorm2d(3), (2, 3, 4, 4), lambda m: m, ('weight', 'bias', 'running_mean', 'running_var')),
    'BatchNorm2d(eval)': (lambda: dl.BatchNorm2d(3).eval(), (2, 3, 4, 4), lambda m: m,
                          ('weight', 'bias', 'running_mean', 'running_var')),
}

# what is done to an array, and what must happen: 'invalid' (ValueError or TypeError naming it) or 'same'
DATA = {
    'smaller': (lambda a: a.reshape(-1)[1:].reshape(-1) if a.ndim == 1 else a[:-1], 'invalid'),
    'larger': (lambda a: np.concatenate([a, a[:1]]), 'invalid'),
    'last axis smaller': (lambda a: a[..., :-1] if a.ndim > 1 else a[:1], 'invalid'),
    'flat': (lambda a: a.reshape(-1) if a.ndim > 1 else a[None], 'invalid'),
    'float64': (lambda a: a.astype(np.float64), 'invalid'),
    'float16': (lambda a: a.astype(np.float16), 'invalid'),
    'int64': (lambda a: np.ones(a.shape, np.int64), 'invalid'),
    'list': (lambda a: a.tolist(), 'invalid'),
    'non-contiguous': (lambda a: np.repeat(a, 2, axis=-1)[..., ::2], 'same'),
    'read-only': (lambda a: _readonly(a.copy()), 'same'),
}
GRAD = {k: DATA[k] for k in ('smaller', 'larger', 'last axis smaller', 'flat', 'float64', 'list')}
GRAD.update({'non-contiguous': (DATA['non-contiguous'][0], 'invalid'), 'read-only': (DATA['read-only'][0], 'invalid'),
             'None': (lambda a: None, 'invalid')})


def _readonly(a):
    a.setflags(write=False)
    return a


def run(layer, arr, when, change, expect):
    "Run one case; returns (outcome, message)"
    build, shape, holder_of, _ = LAYERS[layer]
    x = rng().normal(size=shape).astype(F32)

    def pass_(model, edit_before=None, edit_between=None):
        holder = holder_of(model)
        if edit_before: edit_before(holder)
        y = model(x.copy())
        dout = np.random.default_rng(1).normal(size=y.shape).astype(F32)
        if edit_between: edit_between(holder)
        grads = {n: p.grad.copy() for n, p in holder.named_parameters() if isinstance(p.grad, np.ndarray)}
        try: dx = model.backward(dout)
        except (ValueError, TypeError):
            now = {n: p.grad for n, p in holder.named_parameters() if isinstance(p.grad, np.ndarray)}
            if any(not np.array_equal(now[n], g) for n, g in grads.items() if n in now): raise _GradsChanged from None
            raise
        return y, dx, [p.grad.copy() for _, p in holder.named_parameters()]

    def edit(holder):
        if arr.endswith('.grad'):
            p = getattr(holder, arr[:-5]); p.grad = change(p.grad)
        elif when == 'parameter':
            setattr(holder, arr, getattr(holder, arr).data.copy())        # the Parameter replaced by its array
        elif arr.startswith('running'):
            setattr(holder, arr, change(getattr(holder, arr)))
        else:
            p = getattr(holder, arr); p.data = change(p.data)
    base = pass_(build())
    try:
        got = pass_(build(), **({'edit_between': edit} if when in ('between', 'grad') else {'edit_before': edit}))
    except _GradsChanged: return 'grads-changed', ''
    except (ValueError, TypeError) as e: return 'refused', str(e)
    except Exception as e:                                      # noqa: BLE001 - any other exception is a failure
        return 'leaked', f"{type(e).__name__}: {e}"
    same = all(np.array_equal(a, b) for a, b in zip(base[:2], got[:2])) and all(
        np.array_equal(a, b) for a, b in zip(base[2], got[2]))
    return ('same' if same else 'different'), ''


class _GradsChanged(Exception):
    "A refused backward pass had already written into a gradient"


def cases():
    "{name: (layer, array, when, change, expectation)}"
    out = {}
    for layer, (_, _, _, arrays) in LAYERS.items():
        for arr in arrays:
            for kind, (change, expect) in DATA.items():
                if arr.startswith('running') and kind == 'read-only' and 'eval' not in layer: expect = 'invalid'
                out[f"{layer}: {arr} {kind}"] = (layer, arr, 'before', change, expect)
                if not arr.startswith('running'):          # between the passes: the backward pass checks them again
                    out[f"{layer}: {arr} {kind} after forward"] = (layer, arr, 'between', change, expect)
            if not arr.startswith('running'):
                out[f"{layer}: {arr} not a Parameter"] = (layer, arr, 'parameter', None, 'invalid')
                for kind, (change, expect) in GRAD.items():
                    out[f"{layer}: {arr}.grad {kind}"] = (layer, arr + '.grad', 'grad', change, expect)
    return out


CASES = cases()


def fused_is_used():
    "The 'fused' layers really run the fused step (else their cases would test the plain path twice)"
    steps = []
    for name in (n for n in LAYERS if n.startswith('fused')):
        m = LAYERS[name][0]()
        m(np.zeros((1, 2, 7, 6), F32))
        steps += [type(s) for s in m._steps]
    return steps == [ConvActPool] * len(steps) and len(steps) == 3


def main(argv):
    report, names = Path(argv[0]), argv[1:] or list(CASES)
    running = Path(str(report) + '.running')
    with open(report, 'a') as out:
        if not names or names == list(CASES):
            out.write(json.dumps({'case': '(fused step used)', 'outcome': 'same' if fused_is_used() else 'different',
                                  'message': ''}) + '\n')
        for name in names:
            running.write_text(name)
            layer, arr, when, change, expect = CASES[name]
            outcome, message = run(layer, arr, when, change, expect)
            out.write(json.dumps({'case': name, 'outcome': outcome, 'message': message}) + '\n')
            out.flush()
    running.write_text('')


if __name__ == '__main__':
    main(sys.argv[1:])
