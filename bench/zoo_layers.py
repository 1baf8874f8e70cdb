"""Every convolution of a zoo network timed inside its training step, dlcourse against PyTorch: which layers a step
gains or loses its time in (bench/run.py's zoo section gives the step and each layer type).

    python bench/zoo_layers.py 0               # ZOO_CASES[0] of bench/worker.py: the small-input ResNet-18 of lesson 08a
    python bench/zoo_layers.py 1 --rounds 5    # GoogLeNet on 3x96x96

Each library runs in a process of its own, in alternating rounds, with the per-layer profile of bench/run.py's zoo
section (`zoo_profile` in bench/worker.py, one convolution per line): PyTorch trains `to_torch` of the same model with
glibc's allocator on its defaults; a round runs one step to warm up, then 10 timed steps; a layer's time is its forward
plus its backward step, the mean per step, then the median of the rounds. Like all timings here it depends on the
machine and is never asserted. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the workers' environment, as
bench/run.py does."""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv=None):
    from worker import ZOO_CASES
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('case', type=int, choices=range(len(ZOO_CASES)), help='index into ZOO_CASES of bench/worker.py')
    p.add_argument('--rounds', type=int, default=3, help='alternating rounds per library (default 3)')
    p.add_argument('--worker', choices=['dlcourse', 'torch'], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:                                  # the per-convolution profile of bench/run.py's zoo section
        import worker
        r = (worker.Dlcourse() if args.worker == 'dlcourse' else worker.Torch()).zoo_profile(args.case, 10, each_conv=True)
        print(json.dumps({'step': r['total'], **{k: v for k, v in r['ms'].items() if not k.startswith('rest')}}))
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
