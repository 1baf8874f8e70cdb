"""Isolation for the grader (tools/exercise_tool.py): a submission runs where it sees only the Python runtime, the
package and a scratch folder of its own, cannot write anywhere else, has no network, and has limits on CPU time, memory,
processes, file size and open files.

Two ways, tried in this order (`auto`):
- `bwrap`: bubblewrap (Debian's `bubblewrap` package) builds a new file system view from read-only binds of what the
  runtime needs, in new network, PID, IPC and UTS namespaces. Run as root it runs the program as the unprivileged user
  `nobody` (setpriv: no capabilities, no new privileges); otherwise it uses an unprivileged user namespace.
- `unshare`: for root without bubblewrap: util-linux `unshare` makes the same namespaces and the same read-only view
  (bind mounts under a fresh tmpfs, then chroot), then drops to `nobody`.
`none` (the grader's `--no-sandbox`) runs the program as it is, with the limits only, after a one-line warning.
"""
import hashlib
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MODES = ('auto', 'bwrap', 'unshare', 'none')
NOBODY = 65534
SYSTEM = ['/usr', '/bin', '/lib', '/lib64', '/lib32', '/sbin', '/etc/ld.so.cache', '/etc/alternatives', '/etc/fonts',
          '/etc/localtime']
HARNESS = Path(__file__).resolve().parent/'exercise_harness.py'


class SandboxUnavailable(RuntimeError):
    "No way to isolate a submission here; the message says what is missing and how to grade anyway"


@dataclass
class Limits:
    "What one submission's process tree may use"
    cpu_s: int = 600               # CPU seconds of each process (RLIMIT_CPU)
    memory: int = 8 << 30          # address space of each process, bytes (RLIMIT_AS)
    processes: int = 256           # processes and threads of the sandbox's user (RLIMIT_NPROC)
    file_size: int = 256 << 20     # largest file it may write, bytes (RLIMIT_FSIZE)
    open_files: int = 512          # RLIMIT_NOFILE

    def apply(self):
        "In the child, before exec: set the limits (soft = hard, so that the program cannot raise them)"
        for res, v in ((resource.RLIMIT_CPU, self.cpu_s), (resource.RLIMIT_AS, self.memory),
                       (resource.RLIMIT_FSIZE, self.file_size), (resource.RLIMIT_NOFILE, self.open_files),
                       (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(res, (v, v))
        if os.getuid() != 0:    # as root the count would be root's; the sandbox's `nobody` is limited by setpriv's child
            resource.setrlimit(resource.RLIMIT_NPROC, (self.processes, self.processes))


def _package_dir():
    import dlcourse
    return Path(dlcourse.__file__).resolve().parent


def readable():
    "The paths a graded program reads: the system's libraries, the Python runtime and its packages, dlcourse, the harness"
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    paths = [Path(p) for p in SYSTEM if Path(p).exists()] + sorted(prefixes)
    pkg = _package_dir()
    paths += [pkg, HARNESS]
    return [p for p in paths if not any(q != p and q in p.parents for q in paths)]   # drop those inside another


def caches(scratch):
    "Writable copies of the package's __pycache__ folders (Numba's compiled kernels) in `scratch`: {copy: original}"
    out = {}
    for d in sorted(_package_dir().rglob('__pycache__')):
        copy = Path(scratch)/'.cache'/hashlib.sha1(str(d).encode()).hexdigest()[:12]
        shutil.copytree(d, copy, copy_function=shutil.copy2)        # copy2 keeps the mtimes Numba's index checks
        out[copy] = d
    return out


def _env(scratch, extra):
    pkg_parent = str(_package_dir().parent)
    env = {'PATH': '/usr/bin:/bin', 'HOME': str(scratch), 'TMPDIR': '/tmp', 'LANG': 'C.UTF-8', 'MPLBACKEND': 'Agg',
           'PYTHONPATH': pkg_parent, 'PYTHONDONTWRITEBYTECODE': '1', 'PYTHONHASHSEED': '0', 'OMP_NUM_THREADS': '1',
           'OPENBLAS_NUM_THREADS': '1', 'NUMBA_NUM_THREADS': '1', 'MPLCONFIGDIR': f'{scratch}/.mpl'}
    env.update(extra)
    return env


def _bwrap_ok():
    exe = shutil.which('bwrap')
    if not exe: return False, "bwrap is not installed (apt-get install bubblewrap)"
    cmd = [exe, '--ro-bind', '/', '/', '--unshare-net', '--unshare-pid', '--die-with-parent']
    if os.getuid() != 0: cmd.insert(1, '--unshare-user')
    r = subprocess.run(cmd + ['true'], capture_output=True, text=True)
    return (True, '') if r.returncode == 0 else (False, f"bwrap does not work here: {r.stderr.strip()[:200]}")


def _unshare_ok():
    if os.getuid() != 0: return False, "the unshare fallback needs root"
    if not (shutil.which('unshare') and shutil.which('setpriv')): return False, "unshare or setpriv (util-linux) is missing"
    r = subprocess.run(['unshare', '--mount', '--net', '--pid', '--fork', 'true'], capture_output=True, text=True)
    return (True, '') if r.returncode == 0 else (False, f"unshare does not work here: {r.stderr.strip()[:200]}")


def available(mode='auto'):
    "The sandbox to use for `mode`: 'bwrap', 'unshare' or 'none'; SandboxUnavailable if the one asked for cannot run"
    if mode not in MODES: raise ValueError(f"sandbox must be one of {list(MODES)}, got {mode!r}")
    if mode == 'none': return 'none'
    why = []
    for m, probe in (('bwrap', _bwrap_ok), ('unshare', _unshare_ok)):
        if mode not in ('auto', m): continue
        ok, reason = probe()
        if ok: return m
        why.append(f"{m}: {reason}")
    raise SandboxUnavailable("no sandbox for grading (" + '; '.join(why) + "): install bubblewrap (apt-get install "
                             "bubblewrap), or grade without isolation with --no-sandbox")


def _drop():
    "setpriv to `nobody`: no capabilities, no new privileges, and a process limit counted for that user"
    return ['setpriv', f'--reuid={NOBODY}', f'--regid={NOBODY}', '--clear-groups', '--inh-caps=-all',
            '--bounding-set=-all', '--no-new-privs', '--']


def command(mode, scratch, argv, limits=None, env=None):
    """(argv, preexec_fn, env) that run `argv` in `scratch` (its current folder, writable) under `mode`. The caller
    runs it with subprocess.Popen(..., preexec_fn=..., env=...)"""
    limits = limits or Limits()
    scratch = Path(scratch).resolve()
    env = _env(scratch, env or {})
    root = os.getuid() == 0
    if root and mode != 'none': os.chown(scratch, NOBODY, NOBODY)
    if mode == 'none': return list(argv), limits.apply, {**os.environ, **env}
    cache = caches(scratch)
    if root:
        for p in [scratch, *scratch.rglob('*')]: os.lchown(p, NOBODY, NOBODY)
    nproc = ['prlimit', f'--nproc={limits.processes}', '--'] if root else []
    if mode == 'bwrap':
        cmd, made = [shutil.which('bwrap'), '--tmpfs', '/tmp'], {Path('/tmp')}
        for p in readable() + [scratch]:
            for parent in reversed(p.parents):           # folders bwrap would otherwise make mode 0700
                if str(parent) != '/' and parent not in made:
                    made.add(parent)
                    cmd += ['--perms', '0755', '--dir', str(parent)]
        for p in readable(): cmd += ['--ro-bind', str(p), str(p)]
        for copy, orig in cache.items(): cmd += ['--bind', str(copy), str(orig)]
        cmd += ['--bind', str(scratch), str(scratch), '--proc', '/proc', '--dev', '/dev',
                '--unshare-net', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try',
                '--die-with-parent', '--new-session', '--chdir', str(scratch), '--clearenv']
        if not root: cmd.insert(1, '--unshare-user')
        for k, v in env.items(): cmd += ['--setenv', k, v]
        cmd += ['--'] + (nproc + _drop() if root else []) + list(argv)
        return cmd, limits.apply, env
    # unshare: the same view, made with mount(8) in a new mount namespace, then chroot and setpriv
    new = scratch.parent/(scratch.name + '.root')
    new.mkdir(exist_ok=True)
    q = lambda p: "'" + str(p).replace("'", "'\\''") + "'"
    lines = ['set -e', f'mount -t tmpfs -o mode=0755 tmpfs {q(new)}',      # /tmp first: the scratch folder may lie in it
             f'mkdir -p {q(new / "tmp")}', f'mount -t tmpfs -o mode=1777 tmpfs {q(new / "tmp")}']
    for p in readable() + [scratch]:
        kind = 'file' if p.is_file() else 'dir'
        lines.append(f'mkdir -p {q(new / str(p.parent)[1:])}')
        lines.append(f'touch {q(new / str(p)[1:])}' if kind == 'file' else f'mkdir -p {q(new / str(p)[1:])}')
    for p in readable():
        lines += [f'mount --rbind {q(p)} {q(new / str(p)[1:])}', f'mount -o remount,bind,ro {q(new / str(p)[1:])}']
    for copy, orig in cache.items(): lines.append(f'mount --bind {q(copy)} {q(new / str(orig)[1:])}')
    lines += [f'mount --bind {q(scratch)} {q(new / str(scratch)[1:])}', f'mkdir -p {q(new / "proc")} {q(new / "dev")}',
              f'mount -t proc proc {q(new / "proc")}',
              f'for d in null zero random urandom; do touch {q(new / "dev")}/$d; mount --bind /dev/$d {q(new / "dev")}/$d; done',
              f'cd {q(new)}',
              'exec chroot . env -i ' + ' '.join(q(f'{k}={v}') for k, v in env.items()) + ' sh -c ' +
              q(f'cd {q(scratch)} && exec ' + ' '.join(q(a) for a in nproc + _drop() + list(argv)))]
    cmd = ['unshare', '--mount', '--propagation', 'private', '--net', '--pid', '--ipc', '--uts', '--fork',
           '--kill-child', '--', 'sh', '-c', '\n'.join(lines)]
    return cmd, limits.apply, {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'}


def cleanup(scratch):
    "Remove a scratch folder (and the unshare fallback's mount point beside it)"
    scratch = Path(scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    new = scratch.parent/(scratch.name + '.root')
    if new.exists():
        try: new.rmdir()
        except OSError: pass
