"""The optimizer's step below the lesson's lines: `sgd_step` updates every parameter with one kernel call
(kernels.optim), the arithmetic of lesson 07's `SGD.step` in one pass over memory instead of one pass per NumPy line."""
import numpy as np

from ..core import FLOAT_DTYPES
from ..kernels.optim import sgd_apply


def sgd_step(params,  # the optimizer's parameters, checked by Optimizer.check_step
             state,   # the optimizer's state by parameter index: {'momentum_buffer': v}
             hyper):  # SGD's hyper-parameters: lr, momentum, weight_decay, nesterov, dampening
    "One step of SGD for every parameter, as lesson 07's SGD.step computes it (the same bits), in one pass each"
    lr, momentum, weight_decay, nesterov, dampening = (hyper[k] for k in ('lr', 'momentum', 'weight_decay', 'nesterov', 'dampening'))
    for i, p in enumerate(params):                                   # all checked before any is updated
        if p.data.dtype not in FLOAT_DTYPES:
            raise ValueError(f"params[{i}].data must be a float32 or float64 array, got dtype {p.data.dtype}")
    for i, p in enumerate(params):
        f = p.data.dtype.type
        w = p.data if p.data.flags.c_contiguous else np.ascontiguousarray(p.data)
        first, v = False, w[:0]                                      # no velocity without momentum
        if momentum:
            s = state.setdefault(i, {})
            first = 'momentum_buffer' not in s
            if first: s['momentum_buffer'] = np.empty_like(w)
            v = s['momentum_buffer']
        sgd_apply(w.reshape(-1), p.grad.reshape(-1), v.reshape(-1), f(lr), f(momentum), f(1 - dampening),
                  f(weight_decay), bool(nesterov), first)
        if w is not p.data: p.data[...] = w                          # a non-contiguous view: write the result back
