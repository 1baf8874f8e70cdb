"""`dlcourse train` in the hands of a hostile or unlucky user: resuming means what it says, a good checkpoint is never
replaced by a bad one, a bad output folder is refused before any work, pipes and logs stay clean, and every bad input
ends in one line (`dlcourse train: error: ...`, exit 2), never a traceback."""
import contextlib
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from conftest import child_env, ctrl_c_reaches_child
from dlcourse import checkpoint as ckmod
from dlcourse.checkpoint import read_checkpoint
from dlcourse.cli import main

MAIN = [sys.executable, '-c', 'import sys; from dlcourse.cli import main; sys.exit(main())']


def cli(*args, cwd, **kw):
    "Run the command in a child process (in `cwd`, so that no default output lands in the repository)"
    return subprocess.run([*MAIN, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd, env=child_env(), **kw)


def in_process(argv, cwd):
    "Run main(argv) in this process, in `cwd`: (exit status, stdout, stderr); any exception but SystemExit escapes"
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: code = main(argv)
            except SystemExit as e: code = e.code
    finally: os.chdir(here)
    return code, out.getvalue(), err.getvalue()


def run_here(*args, cwd):
    "`cli` in this process (faster: no interpreter to start), for what needs no process of its own"
    code, out, err = in_process([str(a) for a in args], cwd)
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def one_error_line(r_or_err, fragment=''):
    "The process said exactly one line on stderr, `dlcourse train: error: ...` (or argparse's `dlcourse: error:`), with `fragment`"
    err = r_or_err if isinstance(r_or_err, str) else r_or_err.stderr
    lines = err.splitlines()
    assert len(lines) == 1 and re.match(r'dlcourse( train)?: error: ', lines[0]), err
    assert 'Traceback' not in err and fragment in lines[0], err
    return lines[0]


def leftovers(folder):
    "Temporary or probe files under `folder`"
    return sorted(str(p) for p in Path(folder).rglob('*') if p.name.endswith('.tmp') or p.name.startswith('.dlcourse'))


def header(path):
    with np.load(path) as f: return json.loads(str(f['header']))


def arrays(path):
    with np.load(path) as f: return {k: f[k] for k in f.files if k != 'header'}


@pytest.fixture(scope='module')
def moons_run(tmp_path_factory):
    "A finished 2-epoch run on the moons: its folder (copy it before changing it)"
    d = tmp_path_factory.mktemp('moons')
    r = cli('train', '--data', 'moons', '--epochs', 2, '--out', d / 'run', '--quiet', cwd=d)
    assert r.returncode == 0, r.stderr
    return d / 'run'


def copy_run(run, dest):
    dest.mkdir()
    for p in run.iterdir(): (dest / p.name).write_bytes(p.read_bytes())
    return dest


# ------------------------------------------------------------------------------------------------------ 1. resume rules
def test_resume_with_new_hyper_parameters_uses_them_and_says_so(moons_run, tmp_path):
    run = copy_run(moons_run, tmp_path / 'run')
    r = run_here('train', '--out', run, '--resume', '--epochs', 3, '--lr', 0.01, '--momentum', 0.5, '--quiet', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == (f"resumed from {run / 'checkpoint.npz'} after epoch 2; changed from the checkpoint: "
                        "--epochs 2 -> 3, --lr 0.05 -> 0.01, --momentum 0.9 -> 0.5")
    assert 'SGD lr 0.01, momentum 0.5, batch 32, 3 epochs' in lines[2]
    h = header(run / 'checkpoint.npz')                       # the new values were used, and are the run's from now on
    assert h['optimizer']['hyper']['lr'] == 0.01 and h['optimizer']['hyper']['momentum'] == 0.5
    assert h['meta']['epoch'] == 3 and h['meta']['info']['epochs'] == 3


def test_resume_without_flags_continues_the_run_exactly(tmp_path):
    "Flags left out on --resume are the checkpoint's (not the defaults): 2 + 1 epochs give the weights of 3 in one go"
    flags = ['--data', 'moons', '--lr', 0.02, '--batch-size', 16, '--seed', 3, '--activation', 'tanh', '--quiet']
    assert cli('train', *flags, '--epochs', 3, '--out', tmp_path / 'straight', cwd=tmp_path).returncode == 0
    assert cli('train', *flags, '--epochs', 2, '--out', tmp_path / 'split', cwd=tmp_path).returncode == 0
    r = cli('train', '--resume', '--epochs', 3, '--out', tmp_path / 'split', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert 'after epoch 2; changed from the checkpoint: --epochs 2 -> 3' in r.stdout
    assert 'parameters, activation tanh; SGD lr 0.02, momentum 0.9, batch 16, 3 epochs' in r.stdout
    a, b = arrays(tmp_path / 'straight' / 'checkpoint.npz'), arrays(tmp_path / 'split' / 'checkpoint.npz')
    assert a.keys() == b.keys()
    for k in a: np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_at_the_total_trains_nothing_and_says_so(moons_run, tmp_path):
    run = copy_run(moons_run, tmp_path / 'run')
    r = run_here('train', '--out', run, '--resume', '--quiet', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert 'with the checkpoint\'s settings' in r.stdout and 'the checkpoint is at epoch 2 of 2: nothing to train' in r.stdout
    assert not any(l.startswith('epoch ') for l in r.stdout.splitlines())


@pytest.mark.parametrize('flag,value,fragment', [
    ('--data', 'xor', 'is a run with --data moons, not --data xor'),
    ('--model', 'lenet5', 'is a run with --model mlp, not --model lenet5'),
    ('--activation', 'tanh', 'is a run with --activation relu, not --activation tanh'),
    ('--seed', '1', 'is a run with --seed 0, not --seed 1'),
])
def test_resume_refuses_another_run(moons_run, tmp_path, flag, value, fragment):
    run = copy_run(moons_run, tmp_path / 'run')
    before = (run / 'checkpoint.npz').read_bytes()
    r = run_here('train', '--out', run, '--resume', flag, value, '--quiet', cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ''
    one_error_line(r, fragment)
    assert (run / 'checkpoint.npz').read_bytes() == before


def edit_header(path, change, resign):
    "Rewrite the checkpoint at `path` with change(header) applied; `resign`: recompute its checksum (as a careful editor would)"
    a = arrays(path)
    h = header(path)
    change(h)
    if resign: h['sha256'] = ckmod._digest(a, {k: v for k, v in h.items() if k != 'sha256'})
    np.savez(path, **a, header=np.array(json.dumps(h)))


def _set(keys, value):
    def change(h):
        d = h
        for k in keys[:-1]: d = d[k]
        d[keys[-1]] = value
    return change


@pytest.mark.parametrize('change,resign,fragment', [
    (_set(['meta', 'epoch'], -1), False, 'corrupted: its checksum does not match its contents'),
    (_set(['optimizer', 'hyper', 'lr'], -0.5), False, 'corrupted: its checksum does not match its contents'),
    (_set(['optimizer', 'hyper', 'lr'], -0.5), True, 'invalid optimizer hyper-parameters'),
    (_set(['optimizer', 'hyper', 'lr'], 'fast'), True, "the optimizer's hyper-parameters must be finite numbers"),
    (_set(['meta', 'epoch'], -1), True, 'its epoch must be an integer >= 0, got -1'),
    (_set(['meta', 'epoch'], '2'), True, "its epoch must be an integer >= 0, got '2'"),
    (lambda h: h['meta'].pop('epoch'), True, 'holds no epoch'),
    (lambda h: h.pop('optimizer'), True, "the header lacks the fields ['optimizer']"),
    (_set(['meta', 'info', 'data'], 'circles'), True, "holds invalid run settings: data must be one of"),
    (_set(['meta', 'info', 'batch_size'], 0), True, 'holds invalid run settings: batch_size must be a positive integer'),
    (lambda h: h['meta'].pop('info'), True, 'records no settings of a `dlcourse train` run'),
    (_set(['optimizer', 'hyper', 'lr'], 10 ** 400), True, "the optimizer's hyper-parameters must be finite numbers"),
    (_set(['meta', 'epoch'], 10 ** 30), True, 'one record of finite numbers per epoch, for the epochs 1 to 1000'),
    (_set(['meta', 'info', 'data'], 'x' * 10 ** 6), True, 'characters ...'),
])
def test_resume_refuses_an_edited_or_invalid_header(moons_run, tmp_path, change, resign, fragment):
    run = copy_run(moons_run, tmp_path / 'run')
    edit_header(run / 'checkpoint.npz', change, resign)
    r = run_here('train', '--out', run, '--resume', '--quiet', cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ''
    line = one_error_line(r, fragment)
    assert len(line) < 1200
    assert line.endswith('start a new run there with --overwrite instead of --resume, or restore the file'), line


@pytest.mark.parametrize('damage,fragment', [
    (lambda b: b[:len(b) // 2], 'is not a dlcourse checkpoint (an .npz file): File is not a zip file; it may be truncated'),
    (lambda b: b'', 'is not a dlcourse checkpoint (an .npz file)'),
    (lambda b: np.random.default_rng(0).bytes(len(b)), 'is not a dlcourse checkpoint (an .npz file)'),
    (lambda b: b[:3000] + bytes([b[3000] ^ 1]) + b[3001:], 'truncated or corrupted?): Bad CRC-32'),
])
def test_resume_from_a_damaged_checkpoint_says_what_to_do(moons_run, tmp_path, damage, fragment):
    run = copy_run(moons_run, tmp_path / 'run')
    (run / 'checkpoint.npz').write_bytes(damaged := damage((run / 'checkpoint.npz').read_bytes()))
    r = run_here('train', '--out', run, '--resume', '--quiet', cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ''
    line = one_error_line(r, fragment)
    assert line.endswith("It cannot be continued: start a new run there with --overwrite instead of --resume, or restore "
                         "the file") and 'pickle' not in line
    assert (run / 'checkpoint.npz').read_bytes() == damaged and leftovers(run) == []


def test_resume_without_a_checkpoint_says_what_to_do(tmp_path):
    (tmp_path / 'empty').mkdir()
    for out in (tmp_path / 'empty', tmp_path / 'missing'):
        r = run_here('train', '--out', out, '--resume', cwd=tmp_path)
        assert r.returncode == 2 and r.stdout == ''
        one_error_line(r, f"--resume: no checkpoint at {out / 'checkpoint.npz'} to continue: give the --out of the run to "
                          "continue, or leave out --resume to start a new run there")
    assert sorted(p.name for p in tmp_path.iterdir()) == ['empty'] and not any((tmp_path / 'empty').iterdir())


# -------------------------------------------------------------------------------- 2. a good checkpoint is never replaced
def test_second_run_into_the_same_out_needs_overwrite(moons_run, tmp_path):
    run = copy_run(moons_run, tmp_path / 'run')
    before = (run / 'checkpoint.npz').read_bytes()
    r = run_here('train', '--data', 'xor', '--epochs', 1, '--out', run, '--quiet', cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ''
    one_error_line(r, f"{run / 'checkpoint.npz'} holds the checkpoint of an earlier run: continue it with --resume, "
                      "replace it with --overwrite, or choose another --out")
    assert (run / 'checkpoint.npz').read_bytes() == before
    r = run_here('train', '--data', 'xor', '--epochs', 1, '--out', run, '--quiet', '--overwrite', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert header(run / 'checkpoint.npz')['meta']['info']['data'] == 'xor'
    one_error_line(run_here('train', '--out', run, '--resume', '--overwrite', cwd=tmp_path), 'not allowed with argument --resume')


def test_divergence_in_the_cli_is_one_true_line(moons_run, tmp_path):
    "A learning rate that overflows the weights: the run stops, says which checkpoint is intact, and it loads"
    run = copy_run(moons_run, tmp_path / 'run')
    before = (run / 'checkpoint.npz').read_bytes()
    r = run_here('train', '--out', run, '--resume', '--epochs', 4, '--lr', '1e300', '--quiet', cwd=tmp_path)
    assert r.returncode == 2
    line = one_error_line(r, 'training diverged')
    assert line.endswith(f"The checkpoint of epoch 2 in {run / 'checkpoint.npz'} is intact.")
    assert (run / 'checkpoint.npz').read_bytes() == before and leftovers(run) == []


# ----------------------------------------------------------------------------------------- 3. check before the work
@pytest.mark.parametrize('make_out,fragment', [
    (lambda d: (d / 'file').write_text('x') and d / 'file', 'is a file, not a folder'),
    (lambda d: (d / 'file').write_text('x') and d / 'file' / 'run', "cannot hold the run's files: Not a directory"),
    (lambda d: d / ('n' * 300), "cannot hold the run's files: File name too long"),
    (lambda d: (d / 'run' / 'curves.png').mkdir(parents=True) or d / 'run', 'curves.png there is a folder, not a file'),
    (lambda d: Path('/sys'), "cannot hold the run's files: Permission denied"),     # unwritable even for root
    (lambda d: Path('/sys/dlcourse-run'), "cannot hold the run's files: Operation not permitted (no permission to write "
                                          "there: choose another --out)"),
    (lambda d: (d / 'a').symlink_to('b') or (d / 'b').symlink_to('a') or d / 'a',
     "--out a cannot hold the run's files: Too many levels of symbolic links (choose another --out)"),
    (lambda d: (d / 'a').symlink_to('b') or (d / 'b').symlink_to('a') or d / 'a' / 'run', 'Too many levels of symbolic links'),
    (lambda d: (d / 'link').symlink_to(d / 'gone') or d / 'link',
     'is a symbolic link to {d}/gone, which does not exist: create that folder, or choose another --out'),
])
def test_bad_out_is_refused_before_training(tmp_path, make_out, fragment):
    out = make_out(tmp_path)
    before = sorted(tmp_path.rglob('*'))
    r = run_here('train', '--data', 'moons', '--epochs', 1, '--out', out.relative_to(tmp_path) if out.is_relative_to(tmp_path)
                 else out, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == '', r.stdout          # nothing trained, not even the data loaded
    one_error_line(r, fragment.format(d=tmp_path))
    assert sorted(tmp_path.rglob('*')) == before                     # no probe, no temporary file, no folder left


def test_a_read_only_out_is_refused_before_training():
    "A folder the user may not write to (as root the command runs as the user nobody, for whom permissions hold)"
    import shutil
    import tempfile
    base = Path(tempfile.mkdtemp(prefix='dlcourse-ro-'))       # in /tmp: reachable for nobody, unlike pytest's tmp_path
    try:
        ro, home = base / 'ro', base / 'home'
        ro.mkdir(); home.mkdir()
        os.chmod(base, 0o755); os.chmod(ro, 0o555); os.chmod(home, 0o777)
        as_a_user = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] if os.geteuid() == 0 else []   # util-linux
        env = child_env(HOME=str(home), NUMBA_CACHE_DIR=str(home / 'numba'), MPLCONFIGDIR=str(home / 'mpl'))
        for out in (ro, ro / 'run'):
            r = subprocess.run([*as_a_user, *MAIN, 'train', '--data', 'moons', '--out', str(out)], cwd=base, env=env,
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 2 and r.stdout == '', r.stdout
            one_error_line(r, f"--out {out} cannot hold the run's files: Permission denied (no permission to write there: "
                              "choose another --out)")
        assert list(ro.iterdir()) == []
    finally: shutil.rmtree(base)


def test_a_file_size_limit_is_found_before_training(tmp_path):
    "A real write error from the kernel (RLIMIT_FSIZE, as a nearly full disk): the checkpoint-sized probe finds it"
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
    r = cli('train', '--data', 'moons', '--epochs', 1, '--out', tmp_path / 'run', cwd=tmp_path, preexec_fn=limit)
    assert r.returncode == 2 and not any(l.startswith('epoch') for l in r.stdout.splitlines()), r.stdout
    one_error_line(r, f"--out {tmp_path / 'run'} cannot hold the run's files: File too large")
    assert not (tmp_path / 'run').exists()


def test_a_file_size_limit_met_during_training_keeps_the_last_checkpoint(tmp_path):
    "RLIMIT_FSIZE lowered on the running process after epoch 1 (as a disk filling up): the next save fails in one line"
    import resource
    run = tmp_path / 'run'
    p = subprocess.Popen([*MAIN, 'train', '--data', 'moons', '--epochs', '100000', '--out', str(run), '--quiet'],
                         cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith('epoch 1 '): resource.prlimit(p.pid, resource.RLIMIT_FSIZE, (10_000, resource.RLIM_INFINITY)); break
    p.stdout.read()
    status, err = p.wait(timeout=300), p.stderr.read()
    assert status == 2
    one_error_line(err, f"could not write {run / 'checkpoint.npz'}: File too large; the previous file there is intact")
    epoch = header(run / 'checkpoint.npz')['meta']['epoch']
    assert epoch >= 1 and leftovers(tmp_path) == []
    read_checkpoint(run / 'checkpoint.npz')                     # the last good one, whole


def test_a_name_that_is_no_utf8_works_and_is_shown_escaped(tmp_path):
    "An --out whose bytes are no UTF-8 (an old Latin-1 file system): the run works, messages show it escaped, in one line"
    out = b'run-\xe9t\xe9'
    base = [sys.executable, '-c', 'import sys; from dlcourse.cli import main; sys.exit(main())', 'train']
    r = subprocess.run([*base, '--data', 'xor', '--epochs', '1', '--out', out, '--quiet'], cwd=tmp_path, env=child_env(),
                       capture_output=True, timeout=300)
    assert r.returncode == 0 and r.stderr == b'', r.stderr
    assert (tmp_path.joinpath(os.fsdecode(out)) / 'checkpoint.npz').is_file()
    r = subprocess.run([*base, '--resume', '--data', 'moons', '--out', out], cwd=tmp_path, env=child_env(),
                       capture_output=True, timeout=300)
    assert r.returncode == 2 and r.stdout == b''
    one_error_line(r.stderr.decode('ascii', 'backslashreplace'), 'is a run with --data xor, not --data moons')


class _NoSpace:
    "np.savez that fills the disk: the first `ok` calls work, later ones write half a file and fail with ENOSPC"
    def __init__(self, ok): self.ok, self.real = ok, np.savez
    def __call__(self, f, **a):
        if self.ok > 0: self.ok -= 1; return self.real(f, **a)
        f.write(b'PK\x03\x04 half a zip file')
        raise OSError(28, 'No space left on device')


def _fsync_on_a_full_disk(fd): raise OSError(28, 'No space left on device')


def test_full_disk_at_the_start_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(ckmod.os, 'fsync', _fsync_on_a_full_disk)   # the kernel reports ENOSPC when the data go to disk
    code, out, err = in_process(['train', '--data', 'moons', '--out', str(tmp_path / 'run')], tmp_path)
    assert code == 2 and out == ''
    one_error_line(err, "cannot hold the run's files: No space left on device (the disk is full: free some space, or "
                        "choose another --out)")
    assert list(tmp_path.iterdir()) == []


def test_full_disk_during_training_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(np, 'savez', _NoSpace(ok=1))           # epoch 1's checkpoint is written, epoch 2's is not
    run = tmp_path / 'run'
    code, out, err = in_process(['train', '--data', 'moons', '--epochs', '3', '--out', str(run), '--quiet'], tmp_path)
    monkeypatch.undo()
    assert code == 2 and 'epoch 1 ' in out
    one_error_line(err, f"could not write {run / 'checkpoint.npz'}: No space left on device; the previous file there is "
                        "intact (the disk is full: free some space, or choose another --out)")
    assert header(run / 'checkpoint.npz')['meta']['epoch'] == 1 and leftovers(run) == []


# ---------------------------------------------------------------------------------------------- 4. pipes, logs, umask
def test_a_closed_pipe_ends_quietly(tmp_path):
    "`dlcourse train | head -1`: exit 141 (as a pipeline member killed by SIGPIPE), nothing on stderr"
    p = subprocess.Popen([*MAIN, 'train', '--data', 'moons', '--out', str(tmp_path / 'run'), '--quiet'], cwd=tmp_path,
                         env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline().startswith(b'data: moons')
    while not p.stdout.readline().startswith(b'epoch 1 '): pass
    p.stdout.close()                                           # the reader quits after epoch 1 of 200
    err = p.stderr.read()
    assert p.wait(timeout=300) == 141 and err == b'', err
    assert 1 <= header(tmp_path / 'run' / 'checkpoint.npz')['meta']['epoch'] < 200
    read_checkpoint(tmp_path / 'run' / 'checkpoint.npz')      # whatever epoch it reached: a good checkpoint


def test_no_progress_bar_in_logs(tmp_path):
    "stderr to a file or pipe: no progress bar anywhere (a log holds the per-epoch lines only)"
    r = cli('train', '--data', 'moons', '--epochs', 2, '--out', tmp_path / 'run', cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == '', r.stderr
    assert '\r' not in r.stdout and 'batch/s' not in r.stdout
    assert [l.split()[1] for l in r.stdout.splitlines() if l.startswith('epoch ')] == ['1', '2']


def test_progress_bar_on_a_terminal_goes_to_stderr(tmp_path):
    import fcntl, pty, struct, termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 80, 0, 0))   # a terminal of 80 columns
    p = subprocess.Popen([*MAIN, 'train', '--data', 'moons', '--epochs', '3', '--out', str(tmp_path / 'run')],
                         cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []

    def drain():
        while True:
            try: data = os.read(master, 4096)
            except OSError: return                           # EIO: the child closed the terminal
            if not data: return
            chunks.append(data)
    t = threading.Thread(target=drain); t.start()
    out, _ = p.communicate(timeout=300)
    t.join(timeout=30); os.close(master)
    terminal = b''.join(chunks).decode(errors='replace')
    assert p.returncode == 0 and 'batch/s' in terminal, terminal
    assert b'\r' not in out and b'batch/s' not in out and out.count(b'\nepoch ') == 3


@pytest.mark.parametrize('umask', [0o022, 0o027, 0o077])
def test_output_files_honour_the_umask(tmp_path, umask):
    r = cli('train', '--data', 'xor', '--epochs', 1, '--out', tmp_path / 'run', '--quiet', cwd=tmp_path,
            preexec_fn=lambda: os.umask(umask))
    assert r.returncode == 0, r.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / 'run').iterdir()}
    assert modes == dict.fromkeys(['checkpoint.npz', 'curves.png', 'history.csv'], 0o666 & ~umask)


def test_a_closed_stdout_trains_silently(tmp_path):
    "`dlcourse train >&-`: no stdout at all; the run still trains and writes its files, and nothing fails"
    r = subprocess.run([*MAIN, 'train', '--data', 'xor', '--epochs', '2', '--out', str(tmp_path / 'run')], cwd=tmp_path,
                       env=child_env(), stdout=None, stderr=subprocess.PIPE, text=True, timeout=300,
                       preexec_fn=lambda: os.close(1))
    assert r.returncode == 0 and r.stderr == '', r.stderr
    assert header(tmp_path / 'run' / 'checkpoint.npz')['meta']['epoch'] == 2 and (tmp_path / 'run' / 'history.csv').exists()


def test_stdout_on_a_full_disk_is_named_as_such(tmp_path):
    "`dlcourse train > log` with the disk of the log full (/dev/full): one line about the output, not about --out"
    with open('/dev/full', 'w') as full:
        r = subprocess.run([*MAIN, 'train', '--data', 'xor', '--epochs', '2', '--out', str(tmp_path / 'run')], cwd=tmp_path,
                           env=child_env(), stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert r.returncode == 2
    one_error_line(r, 'could not write the standard output: No space left on device (the disk is full: free some space, '
                      'or send it elsewhere)')
    assert list(tmp_path.iterdir()) == []                      # it stopped at the first line: no run, no folder


# ------------------------------------------------------------------------------------------------ 5. Ctrl-C tells the truth
def interrupt_after(tmp_path, args, line_start):
    "Start a run, send SIGINT once stdout shows a line starting with `line_start`; returns (status, stderr)"
    p = subprocess.Popen([*MAIN, 'train', *args, '--out', str(tmp_path / 'run'), '--quiet'], cwd=tmp_path, env=child_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_reaches_child)
    for line in p.stdout:
        if line.startswith(line_start): p.send_signal(signal.SIGINT); break
    p.stdout.read()
    return p.wait(timeout=300), p.stderr.read()


def test_ctrl_c_in_epoch_1_says_there_is_no_checkpoint(tmp_path):
    status, err = interrupt_after(tmp_path, ['--data', 'sample', '--epochs', '1'], 'model:')   # LeNet-5: seconds per epoch
    assert status == 130 and 'Traceback' not in err, err
    assert err.strip() == "interrupted in epoch 1: no checkpoint of this run was written yet (one is written after every epoch)"
    assert not (tmp_path / 'run' / 'checkpoint.npz').exists()


def test_ctrl_c_later_names_the_checkpoint_that_exists(tmp_path):
    status, err = interrupt_after(tmp_path, ['--data', 'moons', '--epochs', '100000'], 'epoch 1 ')
    assert status == 130 and 'Traceback' not in err, err
    m = re.fullmatch(r"interrupted in epoch \d+: the checkpoint of epoch (\d+) is (.+); continue with --resume", err.strip())
    assert m, err
    assert Path(m[2]) == tmp_path / 'run' / 'checkpoint.npz' and header(m[2])['meta']['epoch'] == int(m[1])


def test_sigterm_stops_as_ctrl_c_does(tmp_path):
    "`kill PID` (or a batch system's time limit): the same truthful line, the curves and history saved, exit 143"
    p = subprocess.Popen([*MAIN, 'train', '--data', 'moons', '--epochs', '100000', '--out', str(tmp_path / 'run'), '--quiet'],
                         cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith('epoch 2 '): p.send_signal(signal.SIGTERM); break
    p.stdout.read()
    status, err = p.wait(timeout=300), p.stderr.read()
    m = re.fullmatch(r"terminated \(SIGTERM\) in epoch \d+: the checkpoint of epoch (\d+) is (.+); continue with --resume",
                     err.strip())
    assert status == 143 and m, err
    assert header(m[2])['meta']['epoch'] == int(m[1]) >= 2
    assert len((tmp_path / 'run' / 'history.csv').read_text().splitlines()) == int(m[1]) + 1
    assert (tmp_path / 'run' / 'curves.png').stat().st_size > 0 and leftovers(tmp_path) == []


def test_ctrl_c_while_testing_says_training_is_complete(tmp_path, monkeypatch):
    from dlcourse.learner import Learner

    def interrupted(self, dl): raise KeyboardInterrupt
    monkeypatch.setattr(Learner, 'evaluate', interrupted)
    code, out, err = in_process(['train', '--data', 'xor', '--epochs', '2', '--out', str(tmp_path / 'run')], tmp_path)
    assert code == 130 and err.strip() == (f"interrupted while testing, after training: training is complete; the checkpoint "
                                           f"of epoch 2 is {tmp_path / 'run' / 'checkpoint.npz'}"), err


def test_sigterm_while_writing_the_curves_says_training_is_complete(tmp_path, monkeypatch):
    "SIGTERM after training, while the curves are written (torchrun stopping the processes): not 'nothing was written'"
    from dlcourse import cli as climod

    def terminated(history, path): raise climod.Terminated
    monkeypatch.setattr(climod, '_save_curves', terminated)
    run = tmp_path / 'run'
    code, out, err = in_process(['train', '--data', 'xor', '--epochs', '2', '--out', str(run)], tmp_path)
    assert code == 143 and err.strip() == (
        f"terminated (SIGTERM) while writing the learning curves and the history: training is complete; the checkpoint of "
        f"epoch 2 is {run / 'checkpoint.npz'}; {run / 'curves.png'} and {run / 'history.csv'} may be missing or an earlier "
        f"epoch's"), err
    assert read_checkpoint(run / 'checkpoint.npz').meta['epoch'] == 2 and not (run / 'curves.png').exists()


def test_ctrl_c_at_the_last_lines_says_training_is_complete(tmp_path, monkeypatch):
    "Ctrl-C while the final lines are printed: everything is written, and the line says so"
    from dlcourse import cli as climod
    write = climod._Stdout.write

    def interrupted(self, text):
        if text.startswith('final test accuracy'): raise KeyboardInterrupt
        return write(self, text)
    monkeypatch.setattr(climod._Stdout, 'write', interrupted)
    run = tmp_path / 'run'
    code, out, err = in_process(['train', '--data', 'xor', '--epochs', '2', '--out', str(run)], tmp_path)
    assert code == 130 and err.strip() == (f"interrupted after training and testing: training is complete; the checkpoint "
                                           f"of epoch 2 is {run / 'checkpoint.npz'}"), err
    assert len((run / 'history.csv').read_text().splitlines()) == 3 and (run / 'curves.png').stat().st_size > 0


def test_no_data_is_one_line(tmp_path, monkeypatch):
    "A data set without examples (a damaged copy): one line, before a loss of 0 or a reduction of an empty array"
    from dlcourse import cli as climod
    empty = (np.zeros((0, 2), np.float32), np.zeros(0, np.int64))
    monkeypatch.setattr(climod, '_load_data', lambda name, seed: [empty, empty, empty])
    code, out, err = in_process(['train', '--data', 'xor', '--out', str(tmp_path / 'run')], tmp_path)
    assert code == 2 and out == ''
    one_error_line(err, '--data xor holds 0 training and 0 test examples: there is nothing to train on or to test')
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ 6. one run at a time in a folder
def test_a_second_run_into_a_busy_out_is_refused(tmp_path):
    "Two runs into one --out at once: the second is refused in one line, the first finishes untouched"
    run = tmp_path / 'run'
    first = subprocess.Popen([*MAIN, 'train', '--data', 'moons', '--epochs', '100000', '--out', str(run), '--quiet'],
                             cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=ctrl_c_reaches_child)
    for line in first.stdout:
        if line.startswith('epoch 1 '): break
    for flags in ([], ['--resume'], ['--overwrite'], ['--data', 'xor', '--overwrite']):
        r = run_here('train', '--data', 'moons', '--out', run, *flags, cwd=tmp_path) if '--data' not in flags else \
            run_here('train', '--out', run, *flags, cwd=tmp_path)
        assert r.returncode == 2 and r.stdout == '', r.stdout
        one_error_line(r, f"--out {run} is in use by another `dlcourse train` that is still running: wait for it to end, or "
                          "choose another --out")
    first.send_signal(signal.SIGINT)
    first.stdout.read()
    assert first.wait(timeout=300) == 130
    epoch = header(run / 'checkpoint.npz')['meta']['epoch']
    assert epoch >= 1 and header(run / 'checkpoint.npz')['meta']['info']['data'] == 'moons' and leftovers(tmp_path) == []
    r = run_here('train', '--out', run, '--resume', '--epochs', epoch + 1, '--quiet', cwd=tmp_path)  # the lock went with it
    assert r.returncode == 0, r.stderr


def test_temporary_files_of_a_killed_run_are_removed(moons_run, tmp_path):
    "SIGKILL mid-write leaves a temporary file that no code of that run can remove: the next run in the folder does"
    run = copy_run(moons_run, tmp_path / 'run')
    stale = [run / '.checkpoint.npz.k1ll3d.tmp', run / '.curves.png.x.tmp', run / '.history.csv.y.tmp']
    for p in stale: p.write_bytes(b'PK\x03\x04 half a file')
    (run / '.notes.tmp').write_text('mine')                    # not the command's: kept
    r = run_here('train', '--out', run, '--resume', '--epochs', 3, '--quiet', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not any(p.exists() for p in stale) and (run / '.notes.tmp').read_text() == 'mine'


# ----------------------------------------------------------------------------------- 7. fuzzing the command's arguments
VALID = {              # small runs on the toy problems: a valid command line trains in well under a second
    '--data': ['xor', 'moons'], '--model': ['mlp'], '--activation': ['relu', 'tanh', 'elu'], '--epochs': ['1', '2'],
    '--lr': ['0.05', '0.5', '1e300'], '--momentum': ['0', '0.9'], '--batch-size': ['1', '4', '1000000'],
    '--seed': ['0', '7', '99999999999999999999'], '--out': ['run', 'run/deeper'],
}
INVALID = {
    '--data': ['circles', '', 'XOR'], '--model': ['lenet5', 'resnet'], '--activation': ['swish', 'RELU'],
    '--epochs': ['0', '-1', '1.5', 'x', '1e3', ''], '--lr': ['0', '-1', 'nan', 'inf', 'x'], '--momentum': ['-0.1', 'nan', 'y'],
    '--batch-size': ['0', '-3', '2.5'], '--seed': ['-1', 'z', '0x10'],
    '--out': ['', ' ', 'existing-file', 'existing-file/run', 'n' * 300, '/sys', '/sys/run', 'loop', 'loop/run', 'dangling'],
}
SWITCHES = ['--resume', '--overwrite', '--quiet', '--bogus', 'extra', '-x', '--help-me', '--']


@st.composite
def argvs(draw):
    "`train --data D`, then random flags with valid or invalid values (or none), switches and junk, in any order"
    def value(flag): return draw(st.sampled_from((VALID if draw(st.integers(0, 3)) else INVALID)[flag]))
    argv = ['train', '--data', value('--data')]      # always a --data: the default would train LeNet-5 on images
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 9))
        if kind < 7:
            flag = draw(st.sampled_from(sorted(VALID)))
            argv += [flag, value(flag)] if kind else [flag]                  # a flag without its value, now and then
        else: argv.append(draw(st.sampled_from(SWITCHES)))
    if '--epochs' not in argv: argv += ['--epochs', '1']    # the toy problems' default is 200
    return argv


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(argv=argvs(), with_checkpoint=st.booleans())
def test_fuzz_cli_arguments(tmp_path_factory, xor_checkpoint, argv, with_checkpoint):
    "Any mix of valid and invalid flags: exit 0, or exit 2 with one line; never a traceback (any exception fails here)"
    d = tmp_path_factory.mktemp('fuzz')
    (d / 'existing-file').write_text('not a folder')
    (d / 'loop').symlink_to('loop2'); (d / 'loop2').symlink_to('loop'); (d / 'dangling').symlink_to(d / 'gone')
    if with_checkpoint:                                        # an earlier run in --out: --resume, --overwrite matter
        (d / 'run').mkdir(); (d / 'run' / 'checkpoint.npz').write_bytes(xor_checkpoint)
    code, out, err = in_process(argv, d)
    event(f"exit {code}")
    assert code in (0, 2), (argv, code, out, err)
    if code == 2:
        one_error_line(err)
        assert not any(l.startswith('epoch ') for l in out.splitlines()) or 'diverged' in err, (argv, out, err)
    else:
        assert err == '' and 'final test accuracy' in out, (argv, out, err)
    assert leftovers(d) == [], argv


@pytest.fixture(scope='module')
def xor_checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp('xor')
    code, out, err = in_process(['train', '--data', 'xor', '--epochs', '1', '--out', str(d / 'run')], d)
    assert code == 0, err
    return (d / 'run' / 'checkpoint.npz').read_bytes()
