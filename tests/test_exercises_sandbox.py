"""The grader's sandbox (tools/exercise_sandbox.py) and the plain data a submission's process sends back.

A submission's cells run in the sandbox through tools/exercise_harness.py; here a lesson test cell (whose `test_eq` records
the values it is given) reports what each attempt to get out of the sandbox gave: the instructor's files unreadable, no
writing outside the scratch folder, no network, limits on memory and processes. Both ways of isolating are tried where
they work: bubblewrap (Debian's `bubblewrap` package, which the test command installs) and, as root, util-linux unshare.
"""
import os
import socket
from pathlib import Path

import numpy as np
import pytest

import exercise_sandbox as sb
import exercise_tool as et
from conftest import REQUIRE_ALL
from dlcourse.exercises import PlainDataError, decode, encode

ROOT = Path(__file__).resolve().parents[1]


def mode_or_skip(mode):
    "The sandbox `mode` if it runs here; else a failure under the test command (bwrap), a visible skip by hand"
    try: return sb.available(mode)
    except sb.SandboxUnavailable as e:
        if REQUIRE_ALL and mode == 'bwrap': pytest.fail(f"the grader's sandbox must be tested: {e}")
        pytest.skip(str(e))


ATTEMPTS = '''
import os, socket, subprocess
def attempt(f):
    try: return ('ok', f())
    except BaseException as e: return (type(e).__name__, None)
def connect():
    s = socket.socket(); s.settimeout(2); s.connect(('127.0.0.1', PORT)); return 'connected'
def write(path):
    with open(path, 'w') as f: f.write('changed by a submission')
def children(n):
    ps = [subprocess.Popen(['sleep', '5']) for _ in range(n)]
    for p in ps: p.kill()
    return n
test_eq(attempt(lambda: open(SECRET).read())[0], 'read the secret')
test_eq(attempt(lambda: write(VICTIM))[0], 'wrote outside')
test_eq(attempt(lambda: write(REPO_FILE))[0], 'wrote into the course')
test_eq(attempt(lambda: write('mine.txt'))[0], 'wrote in scratch')
test_eq(attempt(connect)[0], 'connected')
test_eq(attempt(lambda: bytearray(6 << 30))[0], 'allocated 6 GiB')
test_eq(attempt(lambda: children(400))[0], 'started 400 processes')
test_eq(os.getuid() if os.geteuid() else 'root', 'uid')
test_eq(sorted(os.listdir(os.path.dirname(SECRET))) if os.path.isdir(os.path.dirname(SECRET)) else 'no such folder', 'listing')
'''


@pytest.mark.parametrize('mode', ['bwrap', 'unshare'])
def test_a_submission_cannot_get_out(mode, tmp_path):
    mode = mode_or_skip(mode)
    secret, victim = tmp_path/'secret'/'expected.json', tmp_path/'victim.txt'
    secret.parent.mkdir()
    secret.write_text('{"expected": 42}')
    victim.write_text('the instructor\'s')
    repo_file = ROOT/'nbs'/'sandbox-probe.txt'
    server = socket.socket()
    server.bind(('127.0.0.1', 0)); server.listen(1)
    work = tmp_path/'work'
    work.mkdir()
    try:
        prelude = (f"SECRET, VICTIM, REPO_FILE, PORT = {str(secret)!r}, {str(victim)!r}, {str(repo_file)!r}, "
                   f"{server.getsockname()[1]}")
        cells = [dict(index='S0', source=prelude, role='code', exercise=None),
                 dict(index='L1', source=ATTEMPTS, role='test', exercise=None)]
        run = et.run_program(cells, 'record', [], mode, cell_timeout=60, timeout=120,
                             limits=sb.Limits(cpu_s=60, memory=4 << 30, processes=64), workdir=work)
    finally: server.close()
    assert run.done, run.log
    got = [et._value(r['values'][0]) for r in run.records if r.get('k') == 'value']
    assert got[0] == 'FileNotFoundError' and got[3] == 'ok', got
    assert got[1] in ('FileNotFoundError', 'PermissionError') and got[2] in ('FileNotFoundError', 'PermissionError'), got
    assert got[4] in ('OSError', 'ConnectionRefusedError'), got       # no route (or bwrap's own loopback only)
    assert got[5:7] == ['MemoryError', 'BlockingIOError'], got
    if os.geteuid() == 0: assert got[7] == sb.NOBODY, 'the submission runs as nobody, not as root'
    assert got[8] == 'no such folder'
    assert secret.read_text() == '{"expected": 42}' and victim.read_text() == "the instructor's"
    assert not repo_file.exists()
    assert list(work.iterdir()) == [], 'the scratch folder is removed'


def test_no_sandbox_is_refused_with_the_flag_named(monkeypatch):
    monkeypatch.setattr(sb, '_bwrap_ok', lambda: (False, 'bwrap is not installed (apt-get install bubblewrap)'))
    monkeypatch.setattr(sb, '_unshare_ok', lambda: (False, 'the unshare fallback needs root'))
    with pytest.raises(sb.SandboxUnavailable, match=r'apt-get install bubblewrap.*--no-sandbox'): sb.available('auto')
    assert sb.available('none') == 'none'
    with pytest.raises(ValueError, match=r"sandbox must be one of \['auto', 'bwrap', 'unshare', 'none'\], got 'docker'"):
        sb.available('docker')
    lines = []
    et.Grader(sandbox='none', log=lines.append)
    assert len(lines) == 1 and lines[0].startswith('warning: grading without a sandbox (--no-sandbox)')


def test_only_the_runtime_and_the_package_are_readable():
    paths = sb.readable()
    assert (ROOT/'dlcourse').resolve() in paths and sb.HARNESS in paths
    assert not any(p == ROOT or ROOT in p.parents and p.name in ('nbs', 'tests', 'tools') for p in paths)
    assert Path('/root') not in paths and Path('/home') not in paths and Path('/tmp') not in paths


# ------------------------------------------------------------------------------------------- plain data, never pickle
VALUES = [None, True, 3, -2 ** 70, 0.1, float('nan'), float('-inf'), 1 + 2j, 'text', np.float32(0.1), np.int16(-3),
          np.float64(2.5), np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1 + 1j]), np.array(True),
          np.zeros((0, 3)), [1, [2.5, 'a']], (np.int64(1), None), {'w': np.ones(2)}]


@pytest.mark.parametrize('v', VALUES, ids=[f"{type(v).__name__}{i}" for i, v in enumerate(VALUES)])
def test_encode_decode_round_trip(v):
    import json
    back = decode(json.loads(json.dumps(encode(v))))
    assert type(back) is type(v)
    if isinstance(v, np.ndarray): assert back.dtype == v.dtype and back.shape == v.shape and np.array_equal(back, v)
    elif isinstance(v, float) and v != v: assert back != back
    elif isinstance(v, (list, tuple, dict)): assert repr(back) == repr(v)
    else: assert back == v and repr(back) == repr(v)


@pytest.mark.parametrize('record', [{'float': 'np.float64(1)'}, {'array': '<f8', 'shape': [3], 'data': 'AAAA'},
                                    {'array': '|O', 'shape': [1], 'data': ''}, {'pickle': 'gASV'}, {'scalar': 'object', 'data': 1},
                                    {'array': '<f8', 'shape': [10 ** 6, 10 ** 6], 'data': ''}, {'int': '9' * 500}, [1, 2]])
def test_decode_refuses_what_encode_does_not_make(record):
    with pytest.raises(PlainDataError): decode(record)


def test_encode_refuses_objects():
    with pytest.raises(PlainDataError, match='a object'): encode(object())
    with pytest.raises(PlainDataError, match='an array of dtype object'): encode(np.array([None]))
