"""Compile the kernels' common versions ahead of time for each x86-64 level and Python version:
dlcourse/kernels/prebuilt/LEVEL-pyXY.pkl (see dlcourse.kernels.prebuilt for what they are and when a process uses them).

    python tools/prebuild_kernels.py            # record which versions the workloads compile, then compile each level
    python tools/prebuild_kernels.py --python /venvs/py3.12/bin/python ...   # also for other Pythons (each with
                                                # dlcourse's dependencies and the same Numba installed)
    python tools/prebuild_kernels.py --check    # do the shipped files still hold the present kernels? (exit 1 if not)

Run it after changing anything under dlcourse/kernels/, or after upgrading Numba: tests/test_prebuilt.py fails while the
shipped files were built from other sources or another Numba. Two steps, each in a fresh process with an empty Numba
cache and the shipped code switched off (DLCOURSE_PREBUILT=0):

1. record: run the workloads (TRAIN_RUNS, then the rest of RECORD) on this machine and list every kernel version they
   compiled (module, name, argument types);
2. compile, once per level and Python: Numba compiles each listed version for a generic CPU of the level
   (NUMBA_CPU_NAME=LEVEL, NUMBA_CPU_FEATURES empty: the level's own features, nothing of this machine's) without
   running it, so that this machine can build the AVX-512 level even without AVX-512; Intel's SVML stays off, as the
   code must run where it is not installed. Each compiled object is stored as Numba's disk cache stores it, compressed."""
import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# What a user runs first, each on a few examples (--limit): `dlcourse train` with every model on the built-in images and
# on a toy problem, with both optimizers; then the zoo's networks as lesson 08 and bench/ train them, and LeNet-5 fused
# and layer by layer at the batches bench/ times.
TRAIN_RUNS = [
    ['--data', 'sample', '--model', 'lenet5'],
    ['--data', 'sample', '--model', 'lenet5', '--optimizer', 'adam', '--activation', 'relu'],
    ['--data', 'sample', '--model', 'mlp'],
    ['--data', 'sample', '--model', 'resnet18'],
    ['--data', 'sample', '--model', 'alexnet'],
    ['--data', 'sample', '--model', 'googlenet'],
    ['--data', 'sample', '--model', 'vgg16'],
    ['--data', 'spirals'],
    ['--data', 'moons', '--optimizer', 'adam'],
]

RECORD = r'''
import os, pickle, sys, tempfile, importlib, pkgutil
import numpy as np
sys.path.insert(0, sys.argv[2])
from dlcourse.kernels import config
config.COMPILE_AHEAD = False          # every kernel compiles in this process, where its versions are listed
import dlcourse as dl
from dlcourse.engine.fusion import fusion
from dlcourse.cli import main
runs = pickle.loads(bytes.fromhex(sys.argv[3]))
for i, args in enumerate(runs):
    print('dlcourse train', *args, file=sys.stderr, flush=True)
    main(['train', '--epochs', '1', '--limit', '256', '--quiet', '--out', os.path.join(sys.argv[4], str(i)), *args])
from bench.worker import ZOO_CASES, zoo_model
for case in range(len(ZOO_CASES)):
    print(ZOO_CASES[case][0], file=sys.stderr, flush=True)
    model, x, y = zoo_model(case)
    loss_fn, opt = dl.CrossEntropyLoss(), dl.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    for _ in range(2):
        loss_fn(model(x), y); opt.zero_grad(); model.backward(loss_fn.backward()); opt.step()
    model.eval(); model(x)
for fused in (True, False):
    for batch in (64, 256, 1000):
        print('LeNet-5, fused' if fused else 'LeNet-5, layer by layer', 'batch', batch, file=sys.stderr, flush=True)
        with fusion(fused):
            model = dl.lenet5(rng=0).train()
            opt = dl.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
            x = np.random.default_rng(0).normal(size=(batch, 1, 28, 28)).astype(np.float32)
            loss_fn = dl.CrossEntropyLoss()
            loss_fn(model(x), np.arange(batch) % 10); opt.zero_grad(); model.backward(loss_fn.backward()); opt.step()
            model.eval(); model(x)
import dlcourse.kernels as K
versions = []
for info in pkgutil.iter_modules(K.__path__):
    module = importlib.import_module('dlcourse.kernels.' + info.name)
    for name, disp in vars(module).items():
        if getattr(disp, 'py_func', None) is not None and disp.py_func.__module__ == module.__name__:
            versions += [(module.__name__, name, sig) for sig in disp.overloads]
with open(sys.argv[1], 'wb') as f: pickle.dump(versions, f)
'''

COMPILE = r'''
import importlib, os, pickle, sys, zlib
import numba
from numba.core.serialize import dumps
from dlcourse.kernels import prebuilt
with open(sys.argv[1], 'rb') as f: versions = pickle.load(f)
codegen = numba.core.registry.cpu_target.target_context.codegen()
level = os.environ['NUMBA_CPU_NAME']
assert codegen.magic_tuple()[1:] == (level, ''), codegen.magic_tuple()
dest = prebuilt.path(level)
part = dest.with_name(dest.name + '.part')
disps = set()
for module, name, sig in versions:
    disp = getattr(importlib.import_module(module), name)
    disp.compile(sig)
    disps.add(disp)
entries = {}
for disp in disps:
    for sig, cres in disp.overloads.items():
        if not disp._cache._impl.check_cachable(cres): raise SystemExit(f'{disp.py_func.__qualname__} cannot be cached')
        entries[prebuilt.key(disp.py_func, sig)] = zlib.compress(dumps(cres._reduce()), 9)
with open(part, 'wb') as f:
    pickle.dump(dict(tag=prebuilt.build_tag(), level=level, entries=entries), f, protocol=4)
os.replace(part, dest)                      # written whole, then renamed
print(dest.name, len(entries), 'versions', round(dest.stat().st_size / 1e6, 1), 'MB', file=sys.stderr)
'''


def _env(cache):
    env = {k: v for k, v in os.environ.items() if not k.startswith('NUMBA_')}
    return dict(env, NUMBA_CACHE_DIR=str(cache), DLCOURSE_PREBUILT='0', PYTHONPATH=str(ROOT), MPLBACKEND='Agg')


def record(tmp):
    "Run the workloads in a fresh process; the kernel versions they compiled: [(module, name, argument types)]"
    out = tmp / 'versions.pkl'
    subprocess.run([sys.executable, '-c', RECORD, str(out), str(ROOT), pickle.dumps(TRAIN_RUNS).hex(), str(tmp / 'runs')],
                   env=_env(tmp / 'record-cache'), cwd=tmp, check=True)
    with open(out, 'rb') as f: return pickle.load(f)


def compile_level(python, level, versions_file, tmp):
    "Compile every listed version with the interpreter `python` for a generic CPU of `level`, into its shipped file"
    env = dict(_env(tmp / f'cache-{level}-{Path(python).parent.parent.name}'), NUMBA_CPU_NAME=level, NUMBA_CPU_FEATURES='',
               NUMBA_DISABLE_INTEL_SVML='1')
    subprocess.run([python, '-c', COMPILE, str(versions_file)], env=env, cwd=tmp, check=True)


def check():
    """Problems with the shipped files (empty: each level has a file for this Python, and every file holds the present
    kernels, built with this Numba and llvmlite; their Python is the one in their name)"""
    from dlcourse.kernels import prebuilt
    problems, tag = [], prebuilt.build_tag()
    for level in prebuilt.LEVELS:
        if not prebuilt.path(level).is_file(): problems.append(f'{prebuilt.path(level).name} is missing')
    for file in sorted(prebuilt.FOLDER.glob('*.pkl')):
        with open(file, 'rb') as f: shipped = pickle.load(f)
        mine = dict(tag, python=shipped['tag'].get('python'))
        differ = [k for k in mine if shipped['tag'].get(k) != mine[k]]
        if file != prebuilt.path(shipped['level'], shipped['tag'].get('python')): differ.append('file name')
        if differ: problems.append(f"{file.name}: built with another {', '.join(differ)}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--check', action='store_true', help='only say whether the shipped files are up to date')
    ap.add_argument('--python', action='append', default=[], help='another interpreter to build for (repeat for more)')
    args = ap.parse_args()
    if args.check:
        problems = check()
        print('\n'.join(problems) or 'the shipped kernels match the sources')
        sys.exit(1 if problems else 0)
    from dlcourse.kernels import prebuilt
    prebuilt.FOLDER.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        versions = record(tmp)                    # also left in tmp / 'versions.pkl' for the compiling processes
        print(f'{len(versions)} kernel versions', file=sys.stderr)
        for python in [sys.executable, *args.python]:
            for level in prebuilt.LEVELS:
                compile_level(python, level, tmp / 'versions.pkl', tmp)
    problems = check()
    if problems: sys.exit('\n'.join(problems))


if __name__ == '__main__':
    main()
