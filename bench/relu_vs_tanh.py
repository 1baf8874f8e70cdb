"""Does ReLU learn about six times faster than tanh? LeNet-5 with tanh against LeNet-5 with ReLU on Fashion-MNIST.

    python bench/relu_vs_tanh.py --seeds 0 1 2 --lrs 0.01 0.03 0.1 --record nbs/data/relu_vs_tanh.json

Krizhevsky et al. (2012, Figure 1) trained a four-layer convolutional network on CIFAR-10 once with tanh and once with
ReLU, without any regularisation, each with the learning rate that made it train fastest, and report that ReLU reached 25 %
training error six times sooner. This script repeats the experiment with LeNet-5 (max pooling) on the full Fashion-MNIST
training set: SGD with momentum 0.9, constant learning rate, batch 64, no weight decay, no augmentation. The training
error is measured as in that figure, on the training batches as they go by, averaged over windows of a tenth of an epoch;
a run stops when a window's error falls to --threshold (or after --max-epochs). For every activation the learning rate
is picked from --lrs (by the median epochs over the seeds), then epochs and seconds to the threshold are compared seed by
seed at those rates. Both networks start from the same seeds, so for each seed they see the same batches; the initial
weights are initialised as lesson 07 recommends for each activation (Xavier with gain 5/3 for tanh, He for ReLU; with
--init default, the layers' own U(±1/sqrt(fan_in)) for both).

Seconds are counted as the process's CPU time of the training steps (single-threaded by default), which a busy machine
disturbs much less than wall-clock time; both are recorded. The record (JSON) holds every run's curve (epoch, windowed
training error, wall seconds, CPU seconds) and the summary; lesson 08a plots it.
--torch runs the same experiment with PyTorch: same initial weights, same batches, so the same curves up to rounding.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_fashion_mnist import DlcourseRunner, TorchRunner, load, set_threads, versions  # noqa: E402  (before numpy)

import numpy as np  # noqa: E402


def initialise(model, activation, rng):
    "Lesson 07's recommendation for each activation: Xavier (gain 5/3) for tanh, He for ReLU; zero biases"
    from dlcourse.conv import Conv2d
    from dlcourse.init import calculate_gain, kaiming_uniform_, xavier_uniform_, zeros_
    from dlcourse.layers import Linear
    for _, m in model.named_modules():
        if isinstance(m, (Conv2d, Linear)):
            if activation == 'relu': kaiming_uniform_(m.weight, nonlinearity='relu', rng=rng)
            else: xavier_uniform_(m.weight, gain=calculate_gain('tanh'), rng=rng)
            zeros_(m.bias)


def run(activation, lr, seed, args, data):
    "Train until the windowed training error reaches the threshold; returns the curve and when it got there"
    from dlcourse.core import manual_seed
    from dlcourse.zoo import lenet5
    xtr, ytr = data
    manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = lenet5(10, activation=activation, pool='max', rng=rng)
    if args.init == 'matched': initialise(model, activation, rng)
    opts = argparse.Namespace(lr=lr, momentum=0.9, weight_decay=0.0)
    runner = (TorchRunner if args.torch else DlcourseRunner)(model, opts)
    order_rng = np.random.default_rng(seed + 2)
    batches = len(xtr) // args.batch_size
    window = max(1, batches // 10)
    curve, errors, seconds, cpu, reached = [], [], 0.0, 0.0, None
    for epoch in range(args.max_epochs):
        order = order_rng.permutation(len(xtr))
        for b in range(batches):
            idx = order[b * args.batch_size:(b + 1) * args.batch_size]
            start, cpu_start = time.perf_counter(), time.process_time()
            loss, correct = runner.step(xtr[idx], ytr[idx])
            seconds, cpu = seconds + time.perf_counter() - start, cpu + time.process_time() - cpu_start
            if not np.isfinite(loss): return dict(activation=activation, lr=lr, seed=seed, curve=curve, epochs=None,
                                                  seconds=None, cpu_seconds=None, diverged=True)
            errors.append(1 - correct / len(idx))
            if len(errors) == window:
                err, e = float(np.mean(errors)), epoch + (b + 1) / batches
                curve.append((round(e, 4), round(err, 5), round(seconds, 2), round(cpu, 2)))
                errors = []
                if err <= args.threshold: reached = (e, seconds, cpu); break
        if reached: break
    print(f"  {activation:4s} lr {lr:<6g} seed {seed}: " + (f"{args.threshold:.0%} training error after {reached[0]:.2f} epochs, "
          f"{reached[2]:.0f} CPU s" if reached else f"not reached in {args.max_epochs} epochs"), flush=True)
    return dict(activation=activation, lr=lr, seed=seed, curve=curve, diverged=False,
                epochs=reached[0] if reached else None, seconds=reached[1] if reached else None,
                cpu_seconds=reached[2] if reached else None)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--lrs', type=float, nargs='+', default=[0.01, 0.03, 0.1])
    p.add_argument('--threshold', type=float, default=0.10, help='training error to reach (default 0.10)')
    p.add_argument('--max-epochs', type=int, default=15)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--train-size', type=int, default=None, help='use only the first N training images')
    p.add_argument('--init', choices=('matched', 'default'), default='matched',
                   help="matched: Xavier for tanh, He for ReLU (lesson 07); default: the layers' own U(±1/sqrt(fan_in))")
    p.add_argument('--torch', action='store_true', help='run with PyTorch instead of dlcourse')
    p.add_argument('--threads', type=int, default=1, help="threads of Numba, numpy's BLAS (and PyTorch); default 1")
    p.add_argument('--record', help='write all runs and the summary as JSON')
    args = p.parse_args(argv)
    set_threads(args.threads, args.torch)
    load_args = argparse.Namespace(data='fashion-mnist', train_size=args.train_size)
    xtr, ytr, _, _ = load(load_args)
    started = time.perf_counter()
    runs = []
    print(f"LeNet-5 (max pooling) on {len(xtr):,} Fashion-MNIST training images, {'PyTorch' if args.torch else 'dlcourse'}: "
          f"epochs to {args.threshold:.0%} training error")
    # 1. the learning rate for each activation: the one reaching the threshold soonest (median over the seeds)
    for activation in ('tanh', 'relu'):
        for lr in args.lrs:
            for seed in args.seeds: runs.append(run(activation, lr, seed, args, (xtr, ytr)))
    best, summary = {}, {}
    for activation in ('tanh', 'relu'):
        med = {}
        for lr in args.lrs:
            eps = [r['epochs'] if r['epochs'] is not None else np.inf for r in runs if r['activation'] == activation and r['lr'] == lr]
            med[lr] = float(np.median(eps))
        best[activation] = min(med, key=med.get)
    # 2. seed by seed at those learning rates
    ratios, time_ratios = [], []
    for seed in args.seeds:
        t, r = ([x for x in runs if x['activation'] == a and x['lr'] == best[a] and x['seed'] == seed][0] for a in ('tanh', 'relu'))
        if t['epochs'] and r['epochs']:
            ratios.append(t['epochs'] / r['epochs']); time_ratios.append(t['cpu_seconds'] / r['cpu_seconds'])
    summary = dict(best_lr=best, threshold=args.threshold,
                   epochs={a: [x['epochs'] for x in runs if x['activation'] == a and x['lr'] == best[a]] for a in best},
                   seconds={a: [x['seconds'] for x in runs if x['activation'] == a and x['lr'] == best[a]] for a in best},
                   cpu_seconds={a: [x['cpu_seconds'] for x in runs if x['activation'] == a and x['lr'] == best[a]] for a in best},
                   speedup_epochs=ratios, speedup_seconds=time_ratios,
                   speedup_epochs_median=float(np.median(ratios)) if ratios else None,
                   speedup_seconds_median=float(np.median(time_ratios)) if time_ratios else None)
    print(f"learning rates: tanh {best['tanh']}, ReLU {best['relu']}")
    print(f"epochs to {args.threshold:.0%} training error: tanh {summary['epochs']['tanh']}, ReLU {summary['epochs']['relu']}")
    if ratios:
        print(f"ReLU is {summary['speedup_epochs_median']:.2f}x faster in epochs (seeds: {', '.join(f'{r:.2f}' for r in ratios)}), "
              f"{summary['speedup_seconds_median']:.2f}x in CPU seconds; total {time.perf_counter() - started:.0f} s")
    if args.record:
        record = dict(framework='torch' if args.torch else 'dlcourse', config=vars(args), versions=versions(args.torch),
                      command='python ' + ' '.join([os.path.relpath(sys.argv[0])] + sys.argv[1:]), runs=runs, summary=summary)
        with open(args.record, 'w') as f: json.dump(record, f, indent=1)
        print(f"wrote {args.record}")


if __name__ == '__main__':
    main()
