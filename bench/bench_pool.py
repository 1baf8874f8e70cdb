"""Pooling layers, dlcourse vs PyTorch CPU, measured in the same run. Prints a table of times, GB/s and ratios.

    python bench/bench_pool.py [--repeat 50] [--dtype float32] [--threads N]

Cases: max pooling 2x2/2 on LeNet-5's maps (N=64: 6x28x28, 16x10x10), overlapping max pooling 3x3/2 on AlexNet's
(N=8: 96x55x55, 256x27x27, 256x13x13), and average pooling 2x2/2 on LeNet-5's. Each is timed forward only (the layer
call; PyTorch under no_grad) and forward + backward (dlcourse: layer(x), layer.backward(dout); PyTorch: autograd with
x.requires_grad). Times are medians over --repeat calls after warm-up, dlcourse and PyTorch calls interleaved so that
both see the same machine load. GB/s counts the bytes that any implementation must move: forward reads x and writes y;
forward + backward also reads dout and writes dx (arg-max indices are not counted).
ratio = dlcourse time / PyTorch time: below 1 means dlcourse is faster. Both libraries use their default number of
threads (one per core); --threads N sets both to N (--threads 1 compares single-core speed, which a busy machine
disturbs less than a parallel run). On a machine shared with other jobs, PyTorch's OpenMP threads spin-wait after each
parallel region and fight over the cores (OMP_WAIT_POLICY=PASSIVE stops that; dlcourse's Numba kernels use Numba's TBB
pool, whose idle threads sleep). bench/run.py times whole networks with each library in its own process.
"""
import argparse

import numpy as np
import torch

import dlcourse as dl
from dlcourse.pool import AvgPool2d, MaxPool2d
from timing import median_times

CASES = [  # (name, 'max' or 'avg', kernel, stride, input shape (N, C, H, W))
    ('max 2x2/2 LeNet C1', 'max', 2, 2, (64, 6, 28, 28)),
    ('max 2x2/2 LeNet C3', 'max', 2, 2, (64, 16, 10, 10)),
    ('max 3x3/2 AlexNet 1', 'max', 3, 2, (8, 96, 55, 55)),
    ('max 3x3/2 AlexNet 2', 'max', 3, 2, (8, 256, 27, 27)),
    ('max 3x3/2 AlexNet 5', 'max', 3, 2, (8, 256, 13, 13)),
    ('avg 2x2/2 LeNet C1', 'avg', 2, 2, (64, 6, 28, 28)),
    ('avg 2x2/2 LeNet C3', 'avg', 2, 2, (64, 16, 10, 10)),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=50)
    parser.add_argument('--dtype', choices=['float32', 'float64'], default='float32')
    parser.add_argument('--threads', type=int, default=None, help='threads for both libraries (default: their defaults)')
    args = parser.parse_args()
    import numba
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; numba {numba.__version__}, "
          f"{numba.get_num_threads()} threads; numpy {np.__version__}; dlcourse {dl.__version__}; {args.dtype}; "
          f"median of {args.repeat}")
    header = f"{'case':22s} {'pass':8s} {'dlcourse ms':>11s} {'GB/s':>6s} {'torch ms':>9s} {'GB/s':>6s} {'ratio':>6s}"
    print(header + '\n' + '-' * len(header))
    rng = np.random.default_rng(0)
    ratios = []
    for name, kind, k, s, shape in CASES:
        x = rng.normal(size=shape).astype(args.dtype)
        ours = (MaxPool2d if kind == 'max' else AvgPool2d)(k, s)
        ref = (torch.nn.MaxPool2d if kind == 'max' else torch.nn.AvgPool2d)(k, s)
        y = ours(x)
        dout = rng.normal(size=y.shape).astype(args.dtype)
        xt, dt = torch.tensor(x), torch.tensor(dout)
        xg = xt.clone().requires_grad_(True)
        with torch.no_grad(): np.testing.assert_allclose(ours(x), ref(xt).numpy(), rtol=1e-5, atol=1e-6)

        def torch_forward():
            with torch.no_grad(): ref(xt)

        def torch_both():
            xg.grad = None
            ref(xg).backward(dt)

        def ours_both():
            ours(x)
            ours.backward(dout)

        moved = {'forward': x.nbytes + y.nbytes, 'fwd+bwd': 2 * (x.nbytes + y.nbytes)}
        for label, a, b in (('forward', lambda: ours(x), torch_forward), ('fwd+bwd', ours_both, torch_both)):
            ta, tb = median_times(a, b, args.repeat)
            ratios.append(ta / tb)
            print(f"{name:22s} {label:8s} {1e3 * ta:11.3f} {moved[label] / ta / 1e9:6.1f} {1e3 * tb:9.3f} "
                  f"{moved[label] / tb / 1e9:6.1f} {ta / tb:6.2f}")
    print(f"geometric mean ratio {np.exp(np.mean(np.log(ratios))):.2f}, worst {max(ratios):.2f}")


if __name__ == '__main__':
    main()
