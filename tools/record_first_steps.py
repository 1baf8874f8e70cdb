"""Record which kernels the first training step of `dlcourse train` compiles, for engine.ahead (dlcourse/engine/first_steps.json).

    python tools/record_first_steps.py            # the runs below, each in a fresh process with an empty Numba cache
    python tools/record_first_steps.py --check    # record again and say whether the file still holds the same

Run it after changing a kernel's arguments or which kernels a layer calls: tests/test_compile_ahead.py fails while the file
no longer names what LeNet-5's first step compiles. A stale entry costs only time (engine.ahead's docstring says why)."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / 'dlcourse' / 'engine' / 'first_steps.json'

# `dlcourse train` with these arguments (and --epochs 1): its defaults first, the first step of a fresh install
RUNS = [
    ['--data', 'sample'],                                        # the default: LeNet-5 on the built-in sample, batch 64
    ['--data', 'sample', '--model', 'mlp'],
    ['--data', 'sample', '--model', 'resnet18'],
    ['--data', 'spirals'],                                       # the toy problems' default: an MLP, batch 32
]

# In the fresh process: engine.ahead's context, replaced by one that records the step's key and what it compiles, then
# ends the process with the record on stdout (the run itself is of no interest)
PROBE = r'''
import json, os, sys
from contextlib import contextmanager
import dlcourse.learner
from dlcourse.engine import ahead as A

@contextmanager
def record(model, x, optimizer):
    key = A.step_key(model, x, optimizer)
    with A.recording() as kernels: yield None
    print('@@ ' + json.dumps(dict(key=key, kernels=kernels)), flush=True)
    os._exit(0)
dlcourse.learner.ahead = record
from dlcourse.cli import main
main(['train', '--epochs', '1', '--out', sys.argv[1], *sys.argv[2:]])
'''


def record(args):
    "The first step of `dlcourse train ARGS`: {key, kernels}, in a fresh process with an empty cache"
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=str(Path(tmp) / 'cache'), DLCOURSE_PREBUILT='0')   # what compiles
        out = subprocess.run([sys.executable, '-c', PROBE, str(Path(tmp) / 'run'), *args], env=env, cwd=tmp,
                             capture_output=True, text=True)
    line = next((l for l in out.stdout.splitlines() if l.startswith('@@ ')), None)
    if line is None: raise SystemExit(f"dlcourse train {' '.join(args)} recorded nothing:\n{out.stderr[-3000:]}")
    step = json.loads(line[3:])
    step['run'] = 'dlcourse train ' + ' '.join(args)
    print(f"{step['run']}: {len(step['kernels'])} kernels", file=sys.stderr)
    return step


def main():
    import numba
    steps = []
    for args in RUNS:
        step = record(args)
        if step['kernels'] and all(s['key'] != step['key'] for s in steps): steps.append(step)
    doc = dict(numba=numba.__version__, steps=[dict(run=s['run'], key=s['key'], kernels=s['kernels']) for s in steps])
    text = json.dumps(doc, indent=1) + '\n'
    if '--check' in sys.argv:
        same = OUT.exists() and json.loads(OUT.read_text())['steps'] == doc['steps']
        print('first_steps.json is up to date' if same else 'first_steps.json differs from a new record')
        sys.exit(0 if same else 1)
    tmp = OUT.with_suffix('.json.tmp')
    tmp.write_text(text)
    os.replace(tmp, OUT)
    print(f"wrote {OUT.relative_to(ROOT)}: {len(steps)} steps", file=sys.stderr)


if __name__ == '__main__':
    main()
