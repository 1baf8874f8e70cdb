"""The optimizer's update in one pass over a parameter: SGD with momentum, Nesterov momentum, dampening and weight decay.

Lesson 07 writes the update as NumPy lines, each a pass over memory with a temporary array: on VGG-16's 138 million
weights those passes and the page faults of the temporaries cost more than half a second per step. Here each weight is
read and written once, with the same operations in the same order, rounded the same way (compiled without fast-math),
so both give the same bits."""
import numpy as np

from .config import SERIAL_VALUES
from .jit import jit, prange

CHUNK = 1 << 14   # values per piece of work in the parallel loop


@jit(exact=True)
def sgd_span(w, g, v, lr, momentum, dampened, weight_decay, nesterov, first, lo, hi):
    """The update of w[lo:hi] (and its velocity v[lo:hi]); the arguments as in `sgd_update`. The choices inside the loops
    are selects between values computed either way (v[i] is read also on the first step), so that the loops vectorise"""
    if momentum == 0:
        for i in range(lo, hi):
            d = g[i] + weight_decay * w[i] if weight_decay != 0 else g[i]      # g + λ w
            w[i] = w[i] - lr * d                                             # w <- w - α g
    else:
        for i in range(lo, hi):
            d = g[i] + weight_decay * w[i] if weight_decay != 0 else g[i]
            old = v[i]
            u = d if first else old * momentum + dampened * d   # v = g at first, then v <- μ v + (1 - dampening) g, rounded
            v[i] = u                                             # as NumPy's v *= μ; v += (1 - dampening) * g
            w[i] = w[i] - lr * (d + momentum * u if nesterov else u)         # Nesterov: g + μ v


@jit(parallel=True, exact=True)
def sgd_update(w,             # the parameter's data, flat (n,), updated in place
               g,             # its gradient, flat (n,)
               v,             # its velocity (momentum buffer), flat (n,), updated in place; unused without momentum
               lr,            # α, in w's dtype
               momentum,      # μ, in w's dtype (0: plain SGD)
               dampened,      # 1 - dampening, in w's dtype
               weight_decay,  # λ, in w's dtype
               nesterov,      # step along g + μ v instead of v?
               first):        # the first step with momentum: v = g (v's old contents are not read)
    "One SGD step for one parameter. Parallel over pieces of CHUNK values (`sgd_apply` runs small ones on one thread)"
    n = w.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = np.int64(c) * CHUNK                     # int64 bounds, as from Python: sgd_span is compiled once
        sgd_span(w, g, v, lr, momentum, dampened, weight_decay, nesterov, first, lo, min(n, lo + CHUNK))


def sgd_apply(w, g, v, lr, momentum, dampened, weight_decay, nesterov, first):
    """`sgd_update`'s step (the same arguments), small parameters straight to `sgd_span` on the calling thread: a network
    whose parameters are all small never compiles the parallel kernel (as `kernels.act.apply_act`)"""
    if w.shape[0] < SERIAL_VALUES: sgd_span(w, g, v, lr, momentum, dampened, weight_decay, nesterov, first, 0, w.shape[0])
    else: sgd_update(w, g, v, lr, momentum, dampened, weight_decay, nesterov, first)
