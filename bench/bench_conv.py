"""Convolution layers, dlcourse vs PyTorch CPU, measured in the same run: forward, and forward + backward (dx, dW, db).

    python bench/bench_conv.py [--repeat 20] [--rounds 3] [--dtype float32] [--case lenet] [--threads 1]

The layers are LeNet-5's (batch 64) and AlexNet's (batch 8). Each line prints the median time of each library, its
GFLOP/s (2*N*K*OH*OW*C*kh*kw per forward, three times that for forward + backward) and the ratio dlcourse / PyTorch
(below 1: dlcourse is faster). To spread the noise of a shared machine over both libraries, every case is timed in
`rounds` alternating blocks of `repeat` calls, each block after a short pause that lets the other library's idle threads
go to sleep.

Both libraries run in this one process, PyTorch with its defaults (dlcourse sets no OpenMP variable; its Numba kernels
run on Numba's TBB pool, see dlcourse.kernels.config). bench/run.py compares the same layers with each library
in its own process, which is the fairer comparison on a busy machine; this script is the quick look at one layer.

By default both libraries use all cores, PyTorch with its default number of threads. `--threads N` limits both to N
threads (Numba, OpenBLAS and PyTorch alike; the script restarts itself with the environment variables set, since BLAS
reads them at start-up): on a machine shared with other jobs, `--threads 1` compares the kernels themselves.
"""
import argparse
import os
import sys
import time

import numpy as np

import dlcourse
from dlcourse.conv import Conv2d
import torch

CASES = [  # name, N, C, K, H (= W), kernel, stride, padding
    ('LeNet-5 conv1  1->6   5x5', 64, 1, 6, 32, 5, 1, 0),
    ('LeNet-5 conv2  6->16  5x5', 64, 6, 16, 14, 5, 1, 0),
    ('AlexNet conv1  3->96 11x11/4', 8, 3, 96, 227, 11, 4, 0),
    ('AlexNet conv2 96->256 5x5 p2', 8, 96, 256, 27, 5, 1, 2),
    ('AlexNet conv3 256->384 3x3 p1', 8, 256, 384, 13, 3, 1, 1),
]


def timings(step, repeat):
    "Seconds per call of `step`, `repeat` calls after 2 warm-up calls"
    for _ in range(2): step()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter(); step(); out.append(time.perf_counter() - t0)
    return out


def pair(N, C, K, H, F, S, P, dtype, seed=0):
    "A dlcourse layer and a torch layer with the same weights, an input and an output gradient"
    ours = Conv2d(C, K, F, S, P, dtype=dtype, rng=seed)
    ref = torch.nn.Conv2d(C, K, F, S, P, dtype=getattr(torch, np.dtype(dtype).name))
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, C, H, H)).astype(dtype)
    dout = rng.normal(size=ours.output_shape(x.shape)).astype(dtype)
    return ours, ref, x, dout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=20, help='calls per block (default 20)')
    parser.add_argument('--rounds', type=int, default=3, help='alternating blocks per library (default 3)')
    parser.add_argument('--dtype', default='float32', choices=('float32', 'float64'))
    parser.add_argument('--case', default='', help='only cases whose name contains this text (e.g. LeNet)')
    parser.add_argument('--threads', type=int, default=None, help='threads for both libraries (default: all cores)')
    args = parser.parse_args()
    if args.threads is not None:
        env = {v: str(args.threads) for v in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'NUMBA_NUM_THREADS')}
        if any(os.environ.get(k) != v for k, v in env.items()):         # restart with BLAS and Numba limited from the start
            os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **env})
        torch.set_num_threads(args.threads)
    dtype = np.dtype(args.dtype)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; numpy {np.__version__}; "
          f"dlcourse {dlcourse.__version__}; {args.dtype}; median of {args.rounds} x {args.repeat} calls")
    print(f"{'case':31s} {'pass':8s} {'dlcourse ms':>11s} {'torch ms':>9s} {'dl GFLOP/s':>10s} {'torch GFLOP/s':>13s} {'ratio':>6s}")
    ratios = []
    for name, N, C, K, H, F, S, P in CASES:
        if args.case.lower() not in name.lower(): continue
        ours, ref, x, dout = pair(N, C, K, H, F, S, P, dtype)
        xt, doutt = torch.tensor(x), torch.tensor(dout)
        xg = xt.clone().requires_grad_(True)

        def torch_forward():
            with torch.no_grad(): ref(xt)

        def torch_both():
            xg.grad = None
            ref(xg).backward(doutt)

        def ours_both():
            ours(x)
            ours.backward(dout)

        _, _, OH, OW = ours.output_shape(x.shape)
        flop = 2 * N * K * OH * OW * C * F * F
        for label, mine, theirs, f in (('forward', lambda: ours(x), torch_forward, flop),
                                       ('fwd+bwd', ours_both, torch_both, 3 * flop)):
            t_ours, t_torch = [], []
            for _ in range(args.rounds):
                time.sleep(0.2); t_ours += timings(mine, args.repeat)
                time.sleep(0.2); t_torch += timings(theirs, args.repeat)
            a, b = float(np.median(t_ours)), float(np.median(t_torch))
            ratios.append(a / b)
            print(f"{name:31s} {label:8s} {1e3 * a:11.3f} {1e3 * b:9.3f} {f / a / 1e9:10.1f} {f / b / 1e9:13.1f} {a / b:6.2f}",
                  flush=True)
    if ratios: print(f"largest ratio {max(ratios):.2f}, geometric mean {np.exp(np.mean(np.log(ratios))):.2f}")


if __name__ == '__main__':
    main()
