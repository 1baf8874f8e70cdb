"""One LeNet-5 training step, dlcourse vs PyTorch CPU, measured in the same run. Prints times and ratios.

    python bench/bench_lenet5.py [--repeat 50] [--threads 1] [--batch-size 128]

A training step is what bench/train_fashion_mnist.py repeats 469 times per epoch: forward pass of a batch of
Fashion-MNIST-sized images (N, 1, 28, 28) through lenet5() (tanh, max pooling), cross-entropy, backward pass, SGD update
with momentum and weight decay. Also timed: the forward pass alone (evaluation, batch 1000). Both networks have the same
weights (dlcourse.interop.to_torch). Times are medians over --repeat steps after warm-up, the two frameworks' steps
interleaved so that both see the same machine load; ratio = dlcourse time / PyTorch time (below 1: dlcourse is faster).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_fashion_mnist  # noqa: E402,F401  (sets the BLAS threads from --threads before numpy starts them)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dlcourse.interop import to_torch  # noqa: E402
from dlcourse.losses import CrossEntropyLoss  # noqa: E402
from dlcourse.optim import SGD  # noqa: E402
from dlcourse.zoo import lenet5  # noqa: E402
from timing import median_times  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeat', type=int, default=50)
    p.add_argument('--threads', type=int, default=1, help="threads of Numba, numpy's BLAS and PyTorch (default 1)")
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--record', help='also write the results as JSON to this file')
    args = p.parse_args()
    import numba
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; numba {numba.__version__}, "
          f"{numba.get_num_threads()} threads; median of {args.repeat}")
    rng = np.random.default_rng(0)
    model = lenet5(rng=0)
    tm = to_torch(model)
    loss_fn, opt = CrossEntropyLoss(), SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = rng.normal(size=(args.batch_size, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, args.batch_size)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    xe = rng.normal(size=(1000, 1, 28, 28)).astype(np.float32)
    xet = torch.from_numpy(xe)

    def ours_step():
        loss_fn(model(x), y); opt.zero_grad(); model.backward_params(loss_fn.backward()); opt.step()

    def torch_step():
        loss = torch.nn.functional.cross_entropy(tm(xt), yt); topt.zero_grad(); loss.backward(); topt.step()

    def torch_eval():
        with torch.no_grad(): tm(xet)

    model.eval(); tm.eval()
    te = median_times(lambda: model(xe), torch_eval, max(5, args.repeat // 5))
    model.train(); tm.train()
    ts = median_times(ours_step, torch_step, args.repeat)
    print(f"{'LeNet-5':30s} {'dlcourse ms':>11s} {'torch ms':>9s} {'ratio':>6s}")
    print(f"{f'training step, batch {args.batch_size}':30s} {1e3 * ts[0]:11.2f} {1e3 * ts[1]:9.2f} {ts[0] / ts[1]:6.2f}")
    print(f"{'forward, batch 1000':30s} {1e3 * te[0]:11.2f} {1e3 * te[1]:9.2f} {te[0] / te[1]:6.2f}")
    print(f"one epoch of 60,000 images: dlcourse {ts[0] * 60000 / args.batch_size:.1f} s, "
          f"PyTorch {ts[1] * 60000 / args.batch_size:.1f} s (training steps only)")
    if args.record:
        command = 'python ' + ' '.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
        with open(args.record, 'w') as f:
            json.dump(dict(command=command, threads=args.threads, batch_size=args.batch_size, repeat=args.repeat, torch=torch.__version__,
                           numba=numba.__version__, step_seconds=dict(dlcourse=ts[0], torch=ts[1]),
                           forward_1000_seconds=dict(dlcourse=te[0], torch=te[1])), f, indent=1)


if __name__ == '__main__':
    main()
