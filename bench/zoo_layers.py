"""Every convolution of a zoo network timed inside its training step, dlcourse against PyTorch: which layers a step
gains or loses its time in (bench/run.py's zoo section gives the step and each layer type).

    python bench/zoo_layers.py 0               # ZOO_CASES[0] of bench/worker.py: the small-input ResNet-18 of lesson 08a
    python bench/zoo_layers.py 1 --rounds 5    # GoogLeNet on 3x96x96

Each library runs in a process of its own, in alternating rounds (PyTorch trains `to_torch` of the same model, with
glibc's allocator on its defaults, as in bench/run.py). A round runs 3 steps to warm up, then 10 timed steps; a layer's
time is its forward plus its backward step, summed per step, the median of the steps, then of the rounds. dlcourse
times each Conv2d's forward and backward calls; PyTorch times each nn.Conv2d from forward pre-hook to forward hook and
from backward pre-hook to the later of its backward hook and its weight's gradient hook (the first layer computes no
input gradient, and its backward hook fires before its weight gradient). Like all timings here it depends on the
machine and is never asserted. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the workers' environment, as
bench/run.py does."""
import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def layer_times(lib, case, steps=10, warmup=3):
    "{'step': ms, layer label: ms} of one training step of ZOO_CASES[case] in `lib` ('dlcourse' or 'torch')"
    from worker import zoo_model
    model, x, y = zoo_model(case)
    spent = collections.defaultdict(float)
    if lib == 'dlcourse':
        from dlcourse.conv import Conv2d
        from dlcourse.losses import CrossEntropyLoss
        from dlcourse.optim import SGD
        loss_fn, opt = CrossEntropyLoss(), SGD(model.parameters(), lr=0.01, momentum=0.9)
        def timed(obj, name, label):
            f = getattr(obj, name)
            def run(*a, **k):
                t0 = time.perf_counter(); r = f(*a, **k); spent[label] += time.perf_counter() - t0; return r
            setattr(obj, name, run)
        for name, m in model.named_modules():
            if isinstance(m, Conv2d):
                for method in ('forward', 'backward'): timed(m, method, label(name, m))   # backward_params calls backward
        def step():
            loss_fn(model(x), y); opt.zero_grad(); model.backward_params(loss_fn.backward()); opt.step()
    else:
        import warnings
        import torch
        from dlcourse.interop import to_torch
        net, xt, yt = to_torch(model).train(), torch.from_numpy(x), torch.from_numpy(y)
        opt, started, ended = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9), {}, {}
        def start(key): started[key] = time.perf_counter()
        def stop(key, lab): spent[lab] += time.perf_counter() - started[key]
        def end(key): ended[key] = time.perf_counter()
        for name, m in net.named_modules():
            if isinstance(m, torch.nn.Conv2d):
                lab = label(name, m)
                m.register_forward_pre_hook(lambda mod, a, k=lab: start(k + ' f'))
                m.register_forward_hook(lambda mod, a, o, k=lab: stop(k + ' f', k))
                m.register_full_backward_pre_hook(lambda mod, g, k=lab: start(k))
                m.register_full_backward_hook(lambda mod, gi, go, k=lab: end(k))
                m.weight.register_hook(lambda g, k=lab: end(k))   # the backward step ends with the later of the two: the
        warnings.filterwarnings('ignore', message='Full backward hook is firing')   # first layer's (no input gradient) hook
        def step():                                                                  # fires before its weight gradient
            ended.clear()
            loss = torch.nn.functional.cross_entropy(net(xt), yt); opt.zero_grad(); loss.backward(); opt.step()
            for k, t in ended.items(): spent[k] += t - started[k]
    for _ in range(warmup): step()
    per_step = collections.defaultdict(list)
    for _ in range(steps):
        spent.clear()
        t0 = time.perf_counter(); step(); per_step['step'].append(time.perf_counter() - t0)
        for k, v in spent.items(): per_step[k].append(v)
    return {k: float(np.median(v)) * 1e3 for k, v in per_step.items()}


def label(name, m):
    "A convolution's row label: its name in the model, channels, filter size and stride"
    (kh, kw), s = m.kernel_size, m.stride[0]                        # pairs in both libraries
    return f"{name} {m.in_channels}->{m.out_channels} {kh}x{kw}" + (f" /{s}" if s != 1 else '')


def main(argv=None):
    from worker import ZOO_CASES
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('case', type=int, choices=range(len(ZOO_CASES)), help='index into ZOO_CASES of bench/worker.py')
    p.add_argument('--rounds', type=int, default=3, help='alternating rounds per library (default 3)')
    p.add_argument('--worker', choices=['dlcourse', 'torch'], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(layer_times(args.worker, args.case)))
        return
    if args.rounds < 1: p.error('--rounds must be at least 1')
    env = {k: v for k, v in os.environ.items() if k not in ('OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE')}
    envs = {'dlcourse': env, 'torch': dict(env, DLCOURSE_KEEP_FREED_MEMORY='0')}
    results = {lib: [] for lib in envs}
    for r in range(args.rounds):
        for lib in (('dlcourse', 'torch') if r % 2 == 0 else ('torch', 'dlcourse')):
            out = subprocess.run([sys.executable, __file__, str(args.case), '--worker', lib], env=envs[lib],
                                 capture_output=True, text=True, cwd=HERE)
            if out.returncode: sys.exit(f"the {lib} worker failed:\n{out.stderr}")
            results[lib].append(json.loads(out.stdout.strip().splitlines()[-1]))
    from run import cpu_name
    print(f"{ZOO_CASES[args.case][0]}: every convolution inside a training step, forward + backward, median of "
          f"{args.rounds} rounds of 10 steps ({cpu_name()}, {os.cpu_count()} cores)")
    print(f"{'layer':44s} {'dlcourse':>10s} {'PyTorch':>10s} {'ratio':>6s}")
    for k in results['dlcourse'][0]:
        a = float(np.median([r[k] for r in results['dlcourse']]))
        b = float(np.median([r.get(k, np.nan) for r in results['torch']]))
        print(f"{k:44s} {a:7.2f} ms {b:7.2f} ms {a / b:6.2f}")


if __name__ == '__main__':
    sys.path.insert(0, str(HERE))
    main()
