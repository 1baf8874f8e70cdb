"""MLP training step, dlcourse vs PyTorch CPU, measured in the same run. Prints a table of times and ratios.

    python bench/bench_mlp.py [--repeat 50]
"""
import argparse
import time

import numpy as np
import torch

import dlcourse as dl


def best_time(step, repeat):
    "Median seconds per call of `step` after 3 warm-up calls"
    for _ in range(3): step()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
    return float(np.median(times))


def mlp_pair(width, depth):
    sizes = [2] + [width] * depth
    ours = dl.Sequential(*[m for a, b in zip(sizes, sizes[1:]) for m in (dl.Linear(a, b, rng=0), dl.Tanh())],
                         dl.Linear(sizes[-1], 1, rng=1), dl.Sigmoid())
    ref = torch.nn.Sequential(*[m for a, b in zip(sizes, sizes[1:]) for m in (torch.nn.Linear(a, b), torch.nn.Tanh())],
                              torch.nn.Linear(sizes[-1], 1), torch.nn.Sigmoid())
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    return ours, ref


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=50)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; numpy {np.__version__}; dlcourse {dl.__version__}")
    print(f"{'case':28s} {'dlcourse ms':>12s} {'torch ms':>10s} {'ratio':>7s}")
    rng = np.random.default_rng(0)
    for width, depth, batch in [(32, 2, 32), (128, 2, 256), (512, 3, 256)]:
        ours, ref = mlp_pair(width, depth)
        X = rng.normal(size=(batch, 2)).astype(np.float32)
        T = rng.uniform(size=(batch, 1)).astype(np.float32)
        loss_fn, params = dl.MSELoss(), ours.parameters()
        Xt, Tt = torch.tensor(X), torch.tensor(T)
        opt = torch.optim.SGD(ref.parameters(), lr=0.1)

        def ours_step():
            loss_fn(ours(X), T)
            ours.zero_grad()
            ours.backward_params(loss_fn.backward())
            for p in params: p.data -= 0.1 * p.grad

        def torch_step():
            opt.zero_grad()
            torch.nn.functional.mse_loss(ref(Xt), Tt).backward()
            opt.step()

        a, b = best_time(ours_step, args.repeat), best_time(torch_step, args.repeat)
        print(f"{f'MLP {width}x{depth}, batch {batch}':28s} {1e3 * a:12.3f} {1e3 * b:10.3f} {a / b:7.2f}")


if __name__ == '__main__':
    main()
