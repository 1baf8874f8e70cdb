"""The checkpoint file format: a model's parameters and buffers, an optimizer's state and JSON metadata in one `.npz`
file, checked by a SHA-256 over every array and by the model's architecture signature, and written atomically (a crash
mid-write leaves the previous file intact). The training loop, the zoo's pretrained weights and the CLI use it."""
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .core import Module, as_path
from .optim import Optimizer

__all__ = ['write_atomic', 'architecture', 'save_checkpoint', 'load_checkpoint']

_FORMAT = 'dlcourse-checkpoint-1'


def architecture(model):
    "The architecture signature a checkpoint must match: (name, shape) of every parameter and buffer"
    return [(name, list(arr.shape)) for name, arr in model.state_dict().items()]


def _digest(arrays):
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode()); h.update(str(a.dtype).encode()); h.update(str(a.shape).encode()); h.update(a.tobytes())
    return h.hexdigest()


def write_atomic(path,    # the file to write
                 write):  # write(f): writes the contents into the binary file object f
    "Call write(file) on a temporary file beside `path`, fsync it, then rename it over `path`: never a half-written file"
    path = as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush(); os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:                   # disk full, file too large, permissions: say what is safe
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, f"could not write {path}: {e.strerror or e}; "
                               f"{'the previous file there is intact' if path.exists() else 'nothing was written'}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
              'optimizer': opt_state, 'sha256': _digest(arrays), 'meta': meta}
    arrays['header'] = np.array(json.dumps(header))
    return write_atomic(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path, model, optimizer=None):
    "Load a checkpoint into `model` (and `optimizer`) after checking format, checksum and architecture; return its meta"
    path = as_path(path)
    if not isinstance(model, Module): raise TypeError(f"model must be a Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an Optimizer or None, got {type(optimizer).__name__}")
    if not path.exists(): raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as f: arrays = {k: f[k] for k in f.files}
        header = json.loads(str(arrays.pop('header')))
    except Exception as e:
        raise ValueError(f"{path} is not a readable dlcourse checkpoint (truncated or corrupted?): {e}") from None
    if header.get('format') != _FORMAT: raise ValueError(f"{path} is not a dlcourse checkpoint (format {header.get('format')!r})")
    if _digest(arrays) != header['sha256']: raise ValueError(f"{path} is corrupted: its checksum does not match its contents")
    want, have = architecture(model), [(n, list(s)) for n, s in header['architecture']]
    if want != have:
        diff = [f"{a} vs {b}" for a, b in zip(have, want) if a != b][:3] or [f"{len(have)} vs {len(want)} arrays"]
        raise ValueError(f"{path} holds a checkpoint of another architecture ({header['model']}, {len(have)} arrays) "
                         f"than this {type(model).__name__} ({len(want)} arrays); first differences (checkpoint vs model): "
                         + '; '.join(diff))
    if optimizer is not None and header['optimizer'] is None: raise ValueError(f"{path} holds no optimizer state")
    model.load_state_dict({k[len('model/'):]: v for k, v in arrays.items() if k.startswith('model/')})
    if optimizer is not None:
        opt = header['optimizer']
        optimizer.load_state_dict({'hyper': opt['hyper'],
                                   'state': {int(i): {k: arrays[f'opt/{i}/{k}'] for k in keys} for i, keys in opt['keys'].items()}})
    return header['meta']
