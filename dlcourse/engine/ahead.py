"""Compiling ahead: the cold start of a training run on two cores instead of one.

Where the package's compiled kernels (`kernels.prebuilt`) hold a step's kernels, nothing compiles and nothing here
happens. Elsewhere (another CPU family, another Numba, kernels changed since they were built, DLCOURSE_PREBUILT=0), a
first training step spends seconds compiling kernels (LeNet-5: seven kernels with their callees, 10-20 seconds on one
core), while the machine's other core waits. Numba compiles on one thread (a global lock), but two processes can
compile at once and share Numba's disk cache. So when `Learner.fit` starts its first step, `ahead`
looks the step up in FIRST_STEPS, the kernels that first steps compile (recorded in order, per network, input and
optimizer), and forks a helper process that compiles them from the last one backwards, while this process runs the step
and compiles from the first one on. Each kernel the helper finishes lands in the cache, and this process loads it when
the step reaches it (milliseconds) instead of compiling it. They meet in the middle; the helper stops there, or when
the step is over, and exits.

The two processes share a little memory that says for each kernel whether this process took it (the helper then stops),
the helper is compiling it (this process waits for it instead of compiling it a second time), or it is done.
Everything else is as without the helper: results do not depend on it (the same kernels, loaded from the cache instead
of compiled here), and a step that is not in FIRST_STEPS, one whose kernels are all in the shipped code, a warm cache
(the helper finds its first kernel done and stops at once), a cache that cannot be written (`kernels.jit`'s CacheWarning), NUMBA_DISABLE_JIT=1, a platform without
`fork`, or `config.COMPILE_AHEAD = False` simply run without it. The kernels' cache files are read and written under a
file lock (`kernels.jit`), so the two processes never mix their index entries.

FIRST_STEPS is `first_steps.json` beside this file, written by `tools/record_first_steps.py`; tests/test_compile_ahead.py
checks that it still names what LeNet-5's first step compiles. A stale entry costs time, never correctness: the helper
compiles a version nobody needs, or this process compiles one the helper did not."""
import importlib
import json
import mmap
import os
import select
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..kernels import config, jit as kernels_jit, prebuilt
from . import fusion

FIRST_STEPS = Path(__file__).with_name('first_steps.json')
TODO, TAKEN, HELPER, DONE = 0, 1, 2, 3      # the state of one kernel in the shared memory


def step_key(model,      # the network (a Module)
             x,          # its first input batch
             optimizer): # the optimizer of the step
    """What decides which kernel versions a training step compiles, as text: the network as it prints, its parameters'
    dtypes, the input's dtype and shape, whether layers fuse, the optimizer's class and whether the network trains"""
    dtypes = sorted({str(p.data.dtype) for p in model.parameters()})
    return '\n'.join([repr(model), f"parameters {' '.join(dtypes)}", f"input {np.asarray(x).dtype} {tuple(np.shape(x))}",
                      f"fusion {'on' if fusion._enabled else 'off'}", f"optimizer {type(optimizer).__name__}",
                      f"training {bool(model.training)}"])


@contextmanager
def recording():
    """Within this context, list the kernels that compile, in order: (module, name, [argument types as Numba writes
    them]), only the outermost of nested compilations (a kernel's callees compile with it)"""
    from numba.core import event
    kernels, depth = [], [0]

    class Listener(event.Listener):
        def on_start(self, ev):
            depth[0] += 1
            f = ev.data['dispatcher'].py_func
            if depth[0] == 1 and f.__module__.startswith('dlcourse.kernels'):
                kernels.append([f.__module__, f.__qualname__, [repr(a) for a in ev.data['args']]])

        def on_end(self, ev): depth[0] -= 1
    listener = Listener()
    event.register('numba:compile', listener)
    try: yield kernels
    finally: event.unregister('numba:compile', listener)


def _load(key):
    "The kernels (dispatcher, argument types) of the first step `key` in FIRST_STEPS, or None"
    try: steps = json.loads(FIRST_STEPS.read_text())['steps']
    except (OSError, ValueError, KeyError): return None
    entry = next((s for s in steps if s.get('key') == key), None)
    if entry is None: return None
    from numba.core import types
    kernels = []
    for module, name, args in entry['kernels']:
        try:
            disp = getattr(importlib.import_module(module), name)
            sig = tuple(eval(a, {'__builtins__': {}}, vars(types)) for a in args)    # Numba's own spelling of a type
        except Exception: return None         # another Numba spells types differently, a kernel was renamed: no helper
        if not hasattr(disp, 'compile') or type(getattr(disp, '_cache', None)).__name__ != 'FunctionCache': return None
        kernels.append((disp, sig))
    return kernels


_started = set()     # the steps this process compiled ahead (once each)


class _Helper:
    "A forked process compiling `kernels` from the last backwards, and this process's side of their shared state"
    def __init__(self, kernels):
        self.kernels, self.index = kernels, {(id(d), s): i for i, (d, s) in enumerate(kernels)}
        self.state = mmap.mmap(-1, len(kernels))           # anonymous and shared: the helper inherits the same pages
        r, self._w = os.pipe()                            # this process closes its end: the helper stops
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', DeprecationWarning)   # Python 3.12: fork() of a process with threads
                self.pid = os.fork()
        except OSError:                                   # no process to be had (a limit): compile here, as without
            os.close(r), os.close(self._w)
            raise
        if self.pid == 0: self._compile(r)                # never returns
        os.close(r)
        kernels_jit.compile_hook = self._before_compile

    def _compile(self, r):
        "In the helper: compile from the last kernel backwards until this process took one, stopped us, or died"
        code = 1
        try:
            os.close(self._w)
            for sig in (signal.SIGINT, signal.SIGTERM):      # they stop the parent; the helper then sees the pipe close
                signal.signal(sig, signal.SIG_IGN)
            devnull = os.open(os.devnull, os.O_RDWR)         # hold none of the parent's files: its pipes' readers see
            for fd in (0, 1, 2): os.dup2(devnull, fd)        # the end when the parent ends, and its locks (the output
            os.closerange(3, r)                              # folder of `dlcourse train`) go with it
            os.closerange(r + 1, max(r + 1, os.sysconf('SC_OPEN_MAX')))
            kernels_jit.compile_hook = None
            parent = os.getppid()
            for i in reversed(range(len(self.kernels))):
                if select.select([r], [], [], 0)[0] or os.getppid() != parent: break   # closed: the step is over
                if self.state[i] != TODO: break               # this process reached it: all before it are its own
                self.state[i] = HELPER
                disp, sig = self.kernels[i]
                disp.compile(sig)                             # into the shared cache (under kernels.jit's lock)
                self.state[i] = DONE
                if disp._cache_hits.get(sig): break           # it was in the cache already: a warm start, stop
            code = 0
        finally:
            os._exit(code)                                    # no atexit handlers, no flushing of the parent's buffers

    def _before_compile(self, disp, sig):
        "kernels.jit.compile_hook: take a kernel before compiling it, or wait while the helper compiles it"
        i = self.index.get((id(disp), sig)) if isinstance(sig, tuple) else None
        if i is None: return
        if self.state[i] == TODO: self.state[i] = TAKEN
        while self.state[i] == HELPER and self._running():
            time.sleep(0.002)
        # DONE: the compilation that follows loads the helper's version from the cache (if the helper died while
        # compiling it, this process compiles it)

    def _running(self):
        "Is the helper still running? (reaps it when it has exited)"
        try:
            if self.pid is not None and os.waitpid(self.pid, os.WNOHANG) != (0, 0): self.pid = None
        except ChildProcessError: self.pid = None         # reaped elsewhere (a waitpid(-1), SIGCHLD ignored)
        return self.pid is not None

    def close(self):
        "The step is over: the helper stops after the kernel it is compiling; it is reaped in the background"
        if kernels_jit.compile_hook == self._before_compile: kernels_jit.compile_hook = None
        os.close(self._w)
        if self._running(): threading.Thread(target=_reap, args=(self.pid,), daemon=True, name='dlcourse-ahead-reaper').start()


def _reap(pid):
    "Wait for the helper `pid` to end"
    try: os.waitpid(pid, 0)
    except ChildProcessError: pass                        # reaped elsewhere


@contextmanager
def ahead(model,       # the network about to take its first training step
          x,           # the step's input batch
          optimizer):  # the step's optimizer
    """Run the step inside this context: a helper process compiles the second half of its kernels meanwhile (see the
    module's docstring), if FIRST_STEPS knows the step and nothing rules it out; else nothing happens"""
    helper = None
    if config.COMPILE_AHEAD and hasattr(os, 'fork') and kernels_jit.compile_hook is None and isinstance(x, np.ndarray):
        try: key = step_key(model, x, optimizer)
        except Exception: key = None                      # a network that does not print or list its parameters: the
        if key is not None and key not in _started:      # step runs as without a helper (which only saves time)
            _started.add(key)
            kernels = _load(key)
            if kernels and all(prebuilt.has(disp, sig) for disp, sig in kernels): kernels = None   # nothing to compile
            try: helper = _Helper(kernels) if kernels else None
            except OSError: helper = None                 # no helper process (fork refused): compile here
    try: yield helper
    finally:
        if helper is not None: helper.close()
