"""Kernels compiled ahead of time: the machine code of the kernel versions that training runs use first, shipped with
the package, so that a fresh install's first `dlcourse train` loads them in milliseconds instead of compiling them.

Why. Compiling is the cold start's cost: LeNet-5's first training step compiles for 10-20 s on a 2-core machine (about
half of it in LLVM's optimisation passes, most of it for the parallel loops). Numba's disk cache helps only from the
second run on, and not at all where it cannot be written. Numba's own ahead-of-time compiler (`numba.pycc`) compiles no
parallel loops and needs a C compiler at install time. This module uses Numba's cache format instead: the same
compiled objects that its disk cache holds, built once by `tools/prebuild_kernels.py` for a generic CPU of each x86-64
level and looked up where Numba's disk cache has nothing:

- `x86-64-v3`: AVX2 and FMA (Intel from Haswell, 2013; AMD from Zen, 2017);
- `x86-64-v4`: AVX-512 (F, BW, CD, DQ, VL: Intel Xeon from Skylake, AMD from Zen 4).

A process uses the highest level its CPU has. Code for a generic CPU of a level runs on every CPU of that level; LLVM
tunes it for no particular model, where a kernel compiled on the machine is tuned for its CPU (bench/ compares both).

When the shipped code is used, and when it is not (then every kernel is compiled as before, and cached on disk):

- the CPU is x86-64 with the level's features, on the system it was built on (Linux);
- Python (3.10 to 3.13 are shipped, one file per level and Python), Numba and llvmlite are the versions it was built
  with, and the kernels' sources (every file of `dlcourse/kernels` but this one) are the same, byte for byte: a changed kernel, a changed threshold in `config`, or a callee
  changed anywhere in the kernels is compiled again (Numba's own cache checks only the function's own file);
- Numba compiles as dlcourse ships: no NUMBA_BOUNDSCHECK (bounds-checked kernels are compiled, serial), no
  NUMBA_CPU_NAME or NUMBA_CPU_FEATURES (the user chose another target), NUMBA_OPT at its default;
- DLCOURSE_PREBUILT is not `0` (set it to `0` to compile every kernel on the machine: the compiler's own cold start,
  which bench/ measures too).

A version that is not in the shipped set (another dtype, a kernel that a lesson calls with float64) compiles and caches
as before. The shipped set holds every kernel version that `tools/prebuild_kernels.py` saw compiled in its workloads:
`dlcourse train` with each model on images and toy data, the zoo's networks training and predicting, LeNet-5 fused and
layer by layer (its TRAIN_RUNS and RECORD list them)."""
import hashlib
import os
import pickle
import platform
import sys
import zlib
from pathlib import Path

import numba

FOLDER = Path(__file__).with_name('prebuilt')      # one file per level and Python: FOLDER / 'x86-64-v3-py311.pkl'
FORMAT = 1                                         # the files' layout (a dict, below); another layout is not read

# The x86-64 levels (the psABI's micro-architecture levels), as LLVM names the CPU features each one adds
_V2 = {'cx16', 'sahf', 'popcnt', 'sse3', 'sse4.1', 'sse4.2', 'ssse3'}
_V3 = _V2 | {'avx', 'avx2', 'bmi', 'bmi2', 'f16c', 'fma', 'lzcnt', 'movbe', 'xsave'}
_V4 = _V3 | {'avx512f', 'avx512bw', 'avx512cd', 'avx512dq', 'avx512vl'}
LEVELS = {'x86-64-v4': _V4, 'x86-64-v3': _V3}      # best first

_state = {}        # this process's choice, made at the first lookup: 'level', 'entries' (or None: not used), 'why'
loaded = []        # (module, kernel name) of each version loaded from the shipped code in this process


def sources_hash():
    "SHA-256 of the kernels' source files (`dlcourse/kernels/*.py` but this one, names and bytes): the code's version"
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob('*.py')):
        if path.name == 'prebuilt.py': continue     # this module compiles nothing
        h.update(path.name.encode() + b'\0' + path.read_bytes() + b'\0')
    return h.hexdigest()


def build_tag():
    "What the shipped code was compiled with and must agree with here: versions, platform and the kernels' sources"
    from importlib.metadata import version
    return dict(format=FORMAT, python='%d.%d' % sys.version_info[:2], numba=numba.__version__,
                llvmlite=version('llvmlite'), machine=platform.machine(), system=platform.system(),
                sources=sources_hash())


def host_level():
    "The best x86-64 level this CPU has (a key of LEVELS), or None"
    if platform.machine().lower() not in ('x86_64', 'amd64'): return None
    from numba.core import codegen
    have = {f[1:] for f in codegen.get_host_cpu_features().split(',') if f.startswith('+')}   # '' where LLVM cannot tell
    return next((level for level, needs in LEVELS.items() if needs <= have), None)


def _compiles_as_shipped():
    "None if Numba compiles here as the shipped code was compiled, else why not"
    cfg = numba.config
    if os.environ.get('DLCOURSE_PREBUILT', '1').strip() == '0': return 'DLCOURSE_PREBUILT=0'
    if cfg.BOUNDSCHECK: return 'NUMBA_BOUNDSCHECK is on'
    if cfg.DISABLE_JIT: return 'NUMBA_DISABLE_JIT is on'
    if cfg.CPU_NAME is not None or cfg.CPU_FEATURES is not None: return 'NUMBA_CPU_NAME or NUMBA_CPU_FEATURES is set'
    if int(cfg.OPT) != 3: return 'NUMBA_OPT is not 3'
    if cfg.DEBUGINFO_DEFAULT: return 'NUMBA_DEBUGINFO is on'
    return None


def path(level, python=None):
    "The shipped file of `level` for Python `python` ('3.11'; default: this one)"
    python = python or '%d.%d' % sys.version_info[:2]
    return FOLDER / f"{level}-py{python.replace('.', '')}.pkl"


def read(level, python=None):
    """The shipped file of `level` for Python `python` (default: this one): dict(tag, level, entries={(module, name,
    sig, code hashes): compressed payload})"""
    with open(path(level, python), 'rb') as f:
        return pickle.load(f)


def _choose():
    "Decide once per process whether the shipped code is used: sets _state"
    why = _compiles_as_shipped()
    level = None if why else host_level()
    if not why and level is None: why = 'the CPU is not x86-64 with AVX2'
    if not why:
        try: shipped = read(level)
        except Exception as e:                    # missing (another Python), unreadable or damaged: compile instead
            why = f'no shipped code for {level} ({type(e).__name__})'
        else:
            tag = build_tag()
            if not isinstance(shipped, dict) or shipped.get('tag') != tag:
                theirs = shipped.get('tag', {}) if isinstance(shipped, dict) else {}
                why = '; '.join('built from other kernel sources' if k == 'sources' else f'built for {k} {theirs.get(k)}'
                                for k in tag if theirs.get(k) != tag[k])
            else: _state['entries'] = shipped['entries']
    _state.update(level=level, why=why)
    _state.setdefault('entries', None)


def _entries():
    "The shipped code's entries in use in this process (deciding once whether to use them), or None"
    if not _state: _choose()
    return _state['entries']


def status():
    "(level, None) where the shipped code is used, else (level or None, why not): for bench/ and the tests"
    _entries()
    return _state['level'], _state['why']


def key(py_func, sig):
    """The shipped code's key of kernel `py_func` compiled for the argument types `sig`: (module, name, sig, the hashes
    of its bytecode and closure as Numba's disk cache computes them)"""
    from numba.core import sigutils
    from numba.core.serialize import dumps
    args = sig if isinstance(sig, tuple) else sigutils.normalize_signature(sig)[0]
    code = hashlib.sha256(py_func.__code__.co_code).hexdigest()
    cells = b'' if py_func.__closure__ is None else dumps(tuple(c.cell_contents for c in py_func.__closure__))
    return py_func.__module__, py_func.__qualname__, tuple(args), (code, hashlib.sha256(cells).hexdigest())


def payload(py_func, sig):
    "The compiled object of `py_func` for `sig` as Numba's disk cache stores it (unpickled), or None"
    entries = _entries()
    blob = None if entries is None else entries.get(key(py_func, sig))
    return None if blob is None else pickle.loads(zlib.decompress(blob))


def has(disp, sig):
    "Is `disp`'s version for `sig` in the shipped code, and is that code used here?"
    entries = _entries()
    return entries is not None and key(disp.py_func, sig) in entries


def attach(disp):
    """Let dispatcher `disp` load versions from the shipped code where its disk cache (or none, if it has no writable
    cache) has nothing: it then neither compiles them nor writes them to its cache"""
    cache = getattr(disp, '_cache', None)
    if cache is None or not hasattr(cache, 'load_overload'): return
    load = cache.load_overload

    def load_overload(sig, target_context):
        found = load(sig, target_context)
        if found is not None: return found
        try:
            data = payload(disp.py_func, sig)
            if data is None: return None
            from numba.core.compiler import CompileResult
            target_context.refresh()
            found = CompileResult._rebuild(target_context, *data)
        except Exception as e:                    # a damaged entry: compile it, and load nothing more from the file
            _state.update(entries=None, why=f'an entry failed to load ({type(e).__name__}: {e})')
            return None
        loaded.append((disp.py_func.__module__, disp.py_func.__qualname__))
        return found
    cache.load_overload = load_overload
