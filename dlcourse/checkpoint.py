"""The checkpoint file format: a model's parameters and buffers, an optimizer's state and JSON metadata in one `.npz`
file, checked by a SHA-256 over the arrays and the header, the architecture and every field, and written atomically (a
crash mid-write leaves the previous file intact). The training loop, the zoo's pretrained weights and the CLI use it."""
import hashlib
import inspect
import json
import math
import os
import signal
import stat
import tempfile
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .core import Module, as_path, is_finite
from .optim import Optimizer

__all__ = ['write_atomic', 'architecture', 'save_checkpoint', 'load_checkpoint', 'read_checkpoint', 'Checkpoint']

# Format 2 (written now) covers the header with the checksum: an edited header is refused as corrupted. Format 1 files (the
# checksum covers the arrays only; the zoo's shipped weights are one) are still read; their header is checked field by field
# like every header. A checksum guards against accidents (a damaged file, a header edited by hand), not against someone who
# recomputes it.
_FORMAT = 'dlcourse-checkpoint-2'
_FORMATS = ('dlcourse-checkpoint-1', _FORMAT)
_FIELDS = ('format', 'architecture', 'model', 'optimizer', 'sha256', 'meta')


def architecture(model):
    "The architecture signature a checkpoint must match: (name, shape) of every parameter and buffer"
    if not isinstance(model, Module): raise TypeError(f"model must be a Module, got {type(model).__name__}")
    return [(name, list(arr.shape)) for name, arr in model.state_dict().items()]


def _digest(arrays, header=None):
    "SHA-256 over every array (name, dtype, shape, bytes) and, for format 2, the header without its own checksum"
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode()); h.update(str(a.dtype).encode()); h.update(str(a.shape).encode()); h.update(a.tobytes())
    if header is not None:
        h.update(json.dumps({k: v for k, v in header.items() if k != 'sha256'}, sort_keys=True, separators=(',', ':')).encode())
    return h.hexdigest()


def _umask():
    "The process's umask, read without changing it where the system tells (Linux), else by setting and restoring it"
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'): return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError): pass
    mask = os.umask(0o022); os.umask(mask)
    return mask


def _final_mode(path):
    "The permission bits open(path, 'wb') would leave: those of the file it replaces, else 0o666 less the umask"
    try: return stat.S_IMODE(os.stat(path).st_mode)
    except OSError: return 0o666 & ~_umask()


@contextmanager
def _signals_held():
    """Hold Ctrl-C (SIGINT) and SIGTERM while the block runs, then act on them: their Python handlers raise at the next
    bytecode, so one arriving while a temporary file is created but not yet named in the caller would leave that file
    behind. In the main thread only (elsewhere no signal handler runs); a handler not installed from Python stays"""
    held, saved = [], {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if handler is not None: saved[signum] = signal.signal(signum, lambda n, frame: held.append((n, frame)))
    try: yield
    finally:
        try:
            for signum, handler in saved.items(): signal.signal(signum, handler)
        finally:
            for signum, frame in held:                 # as if each had arrived now
                handler = saved[signum]
                if callable(handler): handler(signum, frame)
                elif handler == signal.SIG_DFL: signal.raise_signal(signum)


def _discard(f, tmp):
    "Close and remove the temporary file of a write that failed (either may be None: not opened, not created)"
    if f is not None: f.close()
    if tmp is not None: Path(tmp).unlink(missing_ok=True)


def write_atomic(path,    # the file to write
                 write):  # write(f): writes the contents into the binary file object f
    """Call write(file) on a temporary file beside `path`, fsync it, then rename it over `path`: never a half-written file,
    never a temporary file left behind; the file gets the permissions a plain open() would give it (the umask's)"""
    path = as_path(path)
    if not callable(write): raise TypeError(f"write must be a function write(f), got {type(write).__name__}")
    if path.is_dir(): raise IsADirectoryError(21, f"could not write {path}: it is a folder")
    try: path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e: raise OSError(e.errno, f"could not create the folder {path.parent}: {e.strerror or e}") from None
    intact = 'the previous file there is intact' if path.exists() else 'nothing was written'
    tmp = f = None
    try:
        with _signals_held():              # the file created, named and opened before an interrupt can stop us
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
            f = os.fdopen(fd, 'wb')
        with f:
            os.fchmod(f.fileno(), _final_mode(path))
            write(f)
            f.flush(); os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:                   # disk full, file too large, permissions: say what is safe
        _discard(f, tmp)
        raise OSError(e.errno, f"could not write {path}: {e.strerror or e}; {intact}") from (e if tmp else None)
    except BaseException:
        _discard(f, tmp)
        raise
    try:                                   # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try: os.fsync(dfd)
        finally: os.close(dfd)
    except OSError: pass
    return path


def save_checkpoint(path,           # the .npz file to write (replaced atomically)
                    model,          # the Module whose parameters and buffers to save
                    optimizer=None, # an Optimizer whose state to save
                    **meta):        # JSON-serialisable extras (epoch, history, ...)
    "Save model (and optimiser) state atomically: a crash mid-write leaves any previous file at `path` intact"
    path = as_path(path)
    if not isinstance(model, Module): raise TypeError(f"model must be a Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an Optimizer or None, got {type(optimizer).__name__}")
    arrays = {f'model/{k}': v for k, v in model.state_dict().items()}
    opt_state = None
    if optimizer is not None:
        sd = optimizer.state_dict()
        opt_state = {'hyper': sd['hyper'], 'keys': {str(i): list(s) for i, s in sd['state'].items()}}
        arrays.update({f'opt/{i}/{k}': v for i, s in sd['state'].items() for k, v in s.items()})
    header = {'format': _FORMAT, 'architecture': architecture(model), 'model': type(model).__name__,
              'optimizer': opt_state, 'meta': meta}
    try: header = json.loads(json.dumps(header))       # as it will read back: the checksum covers exactly that
    except (TypeError, ValueError) as e: raise TypeError(f"meta must be JSON-serialisable: {e}") from None
    header['sha256'] = _digest(arrays, header)
    arrays['header'] = np.array(json.dumps(header))
    return write_atomic(path, lambda f: np.savez(f, **arrays))


def _is_int(v, low=0): return isinstance(v, int) and not isinstance(v, bool) and v >= low
def _is_number(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)): return False
    try: return math.isfinite(v)
    except OverflowError: return False     # an int beyond float's range: 10**400


class Checkpoint:
    "A checkpoint file read and checked (format, checksum, every header field, the arrays), not yet loaded into anything"
    def __init__(self, path, header, arrays):
        self.path, self.header, self.arrays = path, header, arrays

    meta = property(lambda self: self.header['meta'], doc="The JSON metadata saved with it (epoch, history, ...)")
    hyper = property(lambda self: (self.header['optimizer'] or {}).get('hyper'), doc="The optimiser's hyper-parameters, or None")

    def _fail(self, what): return ValueError(f"{self.path}: {what}")

    def _check_header(self):
        "Every field of the header, and the arrays against it; ValueError naming the first problem"
        h, fail = self.header, self._fail
        if not isinstance(h, dict): raise fail(f"the header must be a JSON object, got {type(h).__name__}")
        if h.get('format') not in _FORMATS: raise fail(f"not a dlcourse checkpoint (format {h.get('format')!r})")
        missing, unknown = [k for k in _FIELDS if k not in h], sorted(set(h) - set(_FIELDS))
        if missing or unknown: raise fail(f"the header lacks the fields {missing} / has unknown fields {unknown}")
        if not isinstance(h['sha256'], str): raise fail("the header's sha256 must be a string")
        digest = _digest(self.arrays, h if h['format'] == _FORMAT else None)
        if digest != h['sha256']:
            raise fail("corrupted: its checksum does not match its contents (an array or the header was changed)")
        if not isinstance(h['model'], str): raise fail(f"the header's model must be a class name, got {h['model']!r}")
        if not isinstance(h['meta'], dict): raise fail(f"the header's meta must be a JSON object, got {h['meta']!r}")
        arch = h['architecture']
        if not (isinstance(arch, list) and all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], str)
                                               and isinstance(e[1], list) and all(_is_int(d) for d in e[1]) for e in arch)):
            raise fail("the header's architecture must be a list of [name, shape] pairs")
        stored = {k[len('model/'):]: list(a.shape) for k, a in self.arrays.items() if k.startswith('model/')}
        if dict((n, s) for n, s in arch) != stored or len(arch) != len(stored):
            raise fail("the header's architecture does not match the arrays stored in the file")
        for k, a in self.arrays.items():
            if a.dtype.kind != 'f': raise fail(f"array {k!r} must hold floats, got dtype {a.dtype}")
        self._check_optimizer_fields()

    def _check_optimizer_fields(self):
        opt, fail = self.header['optimizer'], self._fail
        expected = set()
        if opt is not None:
            if not isinstance(opt, dict) or set(opt) != {'hyper', 'keys'}:
                raise fail("the header's optimizer must be null or an object with the fields 'hyper' and 'keys'")
            hyper, keys = opt['hyper'], opt['keys']
            if not isinstance(hyper, dict) or not all(isinstance(v, bool) or _is_number(v) for v in hyper.values()):
                raise fail(f"the optimizer's hyper-parameters must be finite numbers or true/false, got {hyper!r}")
            if not isinstance(keys, dict): raise fail("the optimizer's state keys must be an object")
            for i, names in keys.items():
                if not (i.isdigit() and str(int(i)) == i) or not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                    raise fail(f"the optimizer's state keys must map parameter indices to lists of names, got {i!r}: {names!r}")
                expected |= {f'opt/{i}/{n}' for n in names}
        found = {k for k in self.arrays if not k.startswith('model/')}
        if found != expected:
            raise fail(f"the optimizer state in the header does not match the arrays in the file "
                       f"(missing {sorted(expected - found)[:3]}, unexpected {sorted(found - expected)[:3]})")

    def check(self, model, optimizer=None):
        "ValueError unless this checkpoint fits `model` (architecture, finite values) and `optimizer` (state, hyper-parameters)"
        want = architecture(model)
        have = [(n, list(s)) for n, s in self.header['architecture']]
        if want != have:
            diff = [f"{a} vs {b}" for a, b in zip(have, want) if a != b][:3] or [f"{len(have)} vs {len(want)} arrays"]
            raise self._fail(f"holds a checkpoint of another architecture ({self.header['model']}, {len(have)} arrays) than "
                             f"this {type(model).__name__} ({len(want)} arrays); first differences (checkpoint vs model): "
                             + '; '.join(diff))
        for k, a in self.arrays.items():
            if not is_finite(a): raise self._fail(f"array {k!r} holds NaN or inf: these weights cannot be used")
        if optimizer is not None: self._check_optimizer(optimizer)

    def _check_optimizer(self, optimizer):
        if not isinstance(optimizer, Optimizer): raise TypeError(f"optimizer must be an Optimizer or None, got {type(optimizer).__name__}")
        opt = self.header['optimizer']
        if opt is None: raise self._fail("holds no optimizer state")
        hyper, own = opt['hyper'], getattr(optimizer, 'hyper', {})
        if set(hyper) != set(own):
            raise self._fail(f"its optimizer hyper-parameters {sorted(hyper)} are not those of this {type(optimizer).__name__} {sorted(own)}")
        for k, v in hyper.items():
            if isinstance(v, bool) != isinstance(own[k], bool):
                raise self._fail(f"the optimizer's hyper-parameter {k} must be {'true or false' if isinstance(own[k], bool) else 'a number'}, got {v!r}")
        try: sig = inspect.signature(type(optimizer))
        except (TypeError, ValueError): sig = None
        if sig is not None and set(hyper) <= set(sig.parameters):      # the optimizer's own checks (SGD: lr > 0, momentum >= 0)
            try: type(optimizer)(optimizer.params, **hyper)
            except (TypeError, ValueError) as e: raise self._fail(f"invalid optimizer hyper-parameters {hyper}: {e}") from None
        n = len(optimizer.params)
        for i, names in opt['keys'].items():
            if int(i) >= n: raise self._fail(f"optimizer state for parameter {i}, but there are only {n}")
            for name in names:
                if self.arrays[f'opt/{i}/{name}'].shape != optimizer.params[int(i)].shape:
                    raise self._fail(f"optimizer state {name!r} of parameter {i} has shape "
                                     f"{self.arrays[f'opt/{i}/{name}'].shape}, expected {optimizer.params[int(i)].shape}")

    def load_into(self, model, optimizer=None):
        "Check, then copy the weights into `model` and the state into `optimizer`: all or nothing; returns the meta data"
        self.check(model, optimizer)
        model.load_state_dict({k[len('model/'):]: v for k, v in self.arrays.items() if k.startswith('model/')})
        if optimizer is not None:
            opt = self.header['optimizer']
            optimizer.load_state_dict({'hyper': dict(opt['hyper']), 'state': {
                int(i): {k: self.arrays[f'opt/{i}/{k}'] for k in keys} for i, keys in opt['keys'].items()}})
        return self.meta


def _members(path):
    "The names of the arrays in the .npz file `path`; ValueError unless it is a zip file of stored (uncompressed) members"
    try:
        with zipfile.ZipFile(path) as z: infos = z.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not a dlcourse checkpoint (an .npz file): {e or type(e).__name__}; it may be truncated "
                         "or corrupted") from None
    size = path.stat().st_size
    for i in infos:      # np.savez stores its arrays: a member larger than the file is compressed (a bomb, or not ours)
        if i.compress_type != zipfile.ZIP_STORED or i.file_size > size:
            raise ValueError(f"{path}: member {i.filename!r} is compressed ({i.file_size:,} bytes from {i.compress_size:,}); "
                             "a dlcourse checkpoint stores its arrays uncompressed, so this file was not written by dlcourse")
    return [i.filename for i in infos]


def read_checkpoint(path):
    "Read a checkpoint file and check its format, checksum, header fields and arrays, without loading it into a model"
    path = as_path(path)
    if not path.exists(): raise FileNotFoundError(f"no checkpoint at {path}")
    if not path.is_file(): raise ValueError(f"{path} is not a file")
    _members(path)
    try:
        with np.load(path, allow_pickle=False) as f: arrays = {k: f[k] for k in f.files}
        header = json.loads(str(arrays.pop('header')))
    except Exception as e:
        raise ValueError(f"{path} is not a readable dlcourse checkpoint (truncated or corrupted?): {e}") from None
    ck = Checkpoint(path, header, arrays)
    ck._check_header()
    return ck


def load_checkpoint(path, model, optimizer=None):
    "Load a checkpoint into `model` (and `optimizer`) after checking format, checksum, header and architecture; return its meta"
    path = as_path(path)
    if not isinstance(model, Module): raise TypeError(f"model must be a Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an Optimizer or None, got {type(optimizer).__name__}")
    return read_checkpoint(path).load_into(model, optimizer)
