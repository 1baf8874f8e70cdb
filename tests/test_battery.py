"""Runs the invalid-input battery (tests/battery.py) in a child process and reports each entry as a test.

A child that crashes (segfault) or hangs on an entry fails that entry's test and is restarted after it, so one crash never
hides the rest of the battery. The battery's size is printed (pytest -s) and written to the report file.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import battery

HERE = Path(__file__).parent

ENTRY_TIMEOUT = 240   # seconds for one entry (all its mutations) before it counts as a hang


def run_battery(report):
    "Run every entry; returns {entry: result dict}; crashed or hung entries get a failure of their own"
    results, todo = {}, [e.name for e in battery.ENTRIES]
    running = Path(str(report) + '.running')
    while todo:
        report.write_text('') if not report.exists() else None
        running.write_text('')
        p = subprocess.Popen([sys.executable, str(HERE / 'battery.py'), str(report), *todo],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        current, since = '', time.monotonic()
        while p.poll() is None:
            time.sleep(0.2)
            now = running.read_text() if running.exists() else ''
            if now != current: current, since = now, time.monotonic()
            if current and time.monotonic() - since > ENTRY_TIMEOUT:
                p.kill(); p.wait()
                break
        for line in report.read_text().splitlines():
            r = json.loads(line)
            results[r['entry']] = r
        todo = [n for n in todo if n not in results]
        if p.returncode == 0 or not todo: break
        stuck = running.read_text() if running.exists() and running.read_text() else todo[0]
        how = 'hung' if p.returncode == -9 else f'died with exit status {p.returncode}'
        results[stuck] = {'entry': stuck, 'cases': 0, 'n_failures': 1,
                          'failures': [f"the process {how} on this entry: {p.stderr.read()[-2000:]}"]}
        todo = [n for n in todo if n != stuck]
    return results


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    report = tmp_path_factory.mktemp('battery') / 'report.jsonl'
    res = run_battery(report)
    total = sum(r['cases'] for r in res.values())
    print(f"\ninvalid-input battery: {total} calls over {len(res)} entries, "
          f"{sum(r['n_failures'] for r in res.values())} failures")
    return res


@pytest.mark.parametrize('name', [e.name for e in battery.ENTRIES])
def test_entry(results, name):
    r = results.get(name)
    assert r is not None, f"{name} did not run"
    assert r['cases'] > 0 or r['n_failures'], f"{name} ran no cases"
    assert r['n_failures'] == 0, f"{r['n_failures']} failures, first ones:\n" + '\n'.join(r['failures'])


def test_every_public_callable_is_in_the_battery():
    "New public functions and layers must get an entry (or be listed here as not taking user data)"
    import inspect
    import dlcourse as dl
    covered = ' '.join(e.name for e in battery.ENTRIES)
    exempt = {'Module', 'Loss', 'Optimizer', 'History', 'GradCheck', 'TrainingDiverged', 'IdxSplit', 'DatasetSource',
              'check_array', 'check_positive', 'check_backward', 'check_allocation', 'as_float_array', 'is_finite', 'get_rng',
              'plot_decision_boundary', 'make_xor', 'fashion_mnist', 'fashion_mnist_sample', 'mnist', 'architecture',
              'pool_floors',
              # validators: they raise the errors the battery checks for; test_core checks them directly
              'check_number', 'check_choice', 'as_pair', 'check_bool', 'as_path', 'check_seed', 'check_grad',
              'check_parameter',
              # base classes and a record type: their subclasses have entries
              'Elementwise', 'Sliding', 'Activation', 'LRScheduler',
              # a loss's value, a float: made by the losses (their entries), its backward() only explains the course's way
              'LossValue'}
    missing = [n for n in dl.__all__ if callable(getattr(dl, n)) and not inspect.ismodule(getattr(dl, n))
               and n not in exempt and n not in covered]
    assert not missing, f"add battery entries for {missing}"
