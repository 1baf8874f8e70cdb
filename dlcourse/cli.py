"""The `dlcourse` command: `dlcourse train` trains a network of the course on a data set from the command line, with the
training loop of lesson 07, and writes a checkpoint (every epoch), the learning curves and the history."""
import argparse
import csv
import errno
import io
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

TOY = ('spirals', 'moons', 'xor', 'separable')
IMAGES = ('sample', 'fashion-mnist', 'mnist')
MODELS = ('mlp', 'lenet5', 'alexnet', 'googlenet', 'vgg16', 'resnet18')
WIDTHS = {'mlp': 256, 'vgg16': 64, 'resnet18': 64}        # the models with a --width, and its default (mlp on toy data: 64)
OPTIMIZERS = ('sgd', 'adam')
SCHEDULES = ('constant', 'step', 'cosine')
ENGINES = ('numba', 'torch')
OUTPUTS = ('checkpoint.npz', 'curves.png', 'history.csv')
IDENTITY = ('data', 'model', 'activation', 'seed', 'width', 'optimizer', 'schedule', 'limit')   # what a run is: --resume
SETTINGS = IDENTITY + ('epochs', 'batch_size', 'lr')      # refuses a checkpoint of another; all recorded (Learner.info)
DISTRIBUTED = """\
Several processes: `torchrun --nproc_per_node=N -m dlcourse train --engine torch ...` trains with PyTorch's
DistributedDataParallel (gloo on the CPU, NCCL on GPUs): each process takes every N-th example of each batch of
--batch-size (the global batch), the gradients are averaged, and the first process writes the checkpoint and the logs."""
ADAPT = """\
How each model reads 28x28 grey images: mlp flattens them; lenet5 pads them to 32x32 in its first convolution (as LeCun's
digits were centred in a 32x32 field); resnet18 uses its small-input stem (a 3x3 stride-1 convolution, no max pooling);
googlenet takes them as they are (its stem shrinks them to 7x7, the last Inception modules see 1x1); vgg16 pads them with
zeros to 32x32 and sizes its classifier for the 1x1 maps left by its five poolings; alexnet, whose 11x11 stride-4 first
layer needs its 227x227 input, resizes each batch to 227x227 (bilinear) and is slow. Every model takes the data's channels."""
RULES = """\
--resume continues the run whose checkpoint is in --out. The data set, model, activation, seed, width, optimizer,
schedule and limit are the run's: leave them out (the checkpoint's are used) or give the same; other values are refused.
--epochs (the total), --lr, --momentum and --batch-size default to the checkpoint's values; given, they override them,
and the 'resumed' line says so. Either engine resumes a checkpoint of either.
Without --resume, an --out that already holds a checkpoint is refused unless --overwrite is given.
The output folder is checked before training: created if needed, and a test file written there. One run at a time
uses a folder: a second `dlcourse train` into the --out of a running one is refused."""

def load_data(name, seed=0, limit=None):
    "Train, validation and test sets (x, y) for a data set name, each cut to `limit` examples; images come as (N, 1, 28, 28) float32"
    sets = _load_data(name, seed)
    return sets if limit is None else [(x[:limit], y[:limit]) for x, y in sets]

def _load_data(name, seed):
    from dlcourse import data, toydata
    if name in TOY:
        make = {'spirals': toydata.make_spirals, 'moons': toydata.make_moons, 'separable': toydata.make_separable}.get(name)
        if make is None: X, t = toydata.make_xor(); sets = [(X, t)] * 3                 # four patterns: all in every set
        else: sets = [make(n, rng=seed + i) for i, n in enumerate((400, 200, 400))]
        return [(X.astype(np.float32), t.astype(np.int64)) for X, t in sets]
    if name not in IMAGES: raise ValueError(f"data must be one of {IMAGES + TOY}, got {name!r}")
    load = {'sample': data.fashion_mnist_sample, 'fashion-mnist': data.fashion_mnist, 'mnist': data.mnist}[name]
    (xtr, ytr), (xte, yte) = load('train'), load('test')
    order = np.random.default_rng(seed).permutation(len(xtr))
    n_valid = len(xtr) // 10
    valid, train = order[:n_valid], order[n_valid:]
    prep = lambda x: data.preprocess(x)
    return [(prep(xtr[train]), ytr[train].astype(np.int64)), (prep(xtr[valid]), ytr[valid].astype(np.int64)),
            (prep(xte), yte.astype(np.int64))]

def build_model(name, x, num_classes, activation=None, width=None):
    "A model for inputs like `x` (the batches `input_transform` makes), adapted to their size and channels as ADAPT says"
    from dlcourse.activations import ACTIVATIONS
    from dlcourse.core import Sequential, check_choice
    from dlcourse.layers import Flatten, Linear
    from dlcourse import zoo
    check_choice(name, 'model', MODELS)
    if activation is not None: check_choice(activation, 'activation', ACTIVATIONS)
    if name == 'mlp':
        act, h = ACTIVATIONS[activation or 'relu'].layer, width or (64 if x.ndim == 2 else 256)
        if x.ndim == 2: return Sequential(Linear(x.shape[1], h), act(), Linear(h, h), act(), Linear(h, num_classes))
        return Sequential(Flatten(), Linear(int(np.prod(x.shape[1:])), h), act(), Linear(h, num_classes))
    if x.ndim != 4: raise ValueError(f"model {name!r} needs image data (--data sample, fashion-mnist or mnist)")
    C, H = x.shape[1], x.shape[2]
    if name == 'lenet5':
        if C != 1 or x.shape[2:] not in ((28, 28), (32, 32)): raise ValueError("model 'lenet5' needs 28x28 or 32x32 grey images")
        return zoo.lenet5(num_classes, activation=activation or 'tanh', padding=2 if H == 28 else 0)
    if name == 'resnet18': return zoo.resnet18(num_classes, C, small_input=H <= 64, width=width or 64)
    if name == 'vgg16': return zoo.vgg16(num_classes, C, small_input=max(x.shape[2:]) < 64, width=width or 64)   # 1x1 maps at the end
    if name == 'googlenet': return zoo.googlenet(num_classes, C)
    return zoo.alexnet(num_classes, C)

def _resize_matrix(n_in, n_out):
    "R (n_out, n_in) with R @ v the bilinear resampling of v (half-pixel centres, as torch's interpolate, align_corners=False)"
    src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1, w = np.minimum(i0 + 1, n_in - 1), src - i0
    R = np.zeros((n_out, n_in), np.float32)
    np.add.at(R, (np.arange(n_out), i0), 1 - w); np.add.at(R, (np.arange(n_out), i1), w)
    return R

def input_transform(name, shape):
    "What a batch of images of `shape` (N, C, H, W) goes through before `name` reads it (ADAPT): a function, or None"
    if len(shape) != 4: return None
    H, W = shape[2:]
    if name == 'vgg16' and min(H, W) < 32:                                 # zero padding to 32x32, as LeNet-5's C1
        (top, bottom), (left, right) = [((32 - n) // 2, 32 - n - (32 - n) // 2) if n < 32 else (0, 0) for n in (H, W)]
        return lambda x: np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    if name == 'alexnet' and (H, W) != (227, 227):
        Rh, Rw = _resize_matrix(H, 227), _resize_matrix(W, 227).T
        return lambda x: np.ascontiguousarray(Rh @ x @ Rw)              # (N, C, 227, 227)
    return None

class Batches:
    "A DataLoader's batches for `dlcourse train`: this process's share (every `world`-th example from `rank` on), through `transform`"
    def __init__(self, loader, transform=None, rank=0, world=1):
        self.loader, self.transform, self.rank, self.world = loader, transform, rank, world
        self._rng = loader._rng              # the batch order's generator, which checkpoints save and restore (Learner)
    def __len__(self): return len(self.loader)
    def __iter__(self):
        for xb, yb in self.loader:
            if len(xb) < self.world: continue                  # a last global batch too small to give every process one
            self.global_batch = len(xb)                        # examples of this batch over all processes
            xb, yb = xb[self.rank::self.world], yb[self.rank::self.world]
            yield (xb if self.transform is None else self.transform(xb)), yb

def _save_curves(history, path):
    import matplotlib
    matplotlib.use('Agg', force=False) if 'matplotlib.pyplot' not in sys.modules else None
    import matplotlib.pyplot as plt
    from dlcourse.checkpoint import write_atomic
    axs = history.plot()
    fig = axs[0].figure
    fig.tight_layout()
    try: write_atomic(path, lambda f: fig.savefig(f, format='png', dpi=100))
    finally: plt.close(fig)

def _save_history(history, path):
    from dlcourse.checkpoint import write_atomic
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=history.columns); w.writeheader(); w.writerows(history.records)
    write_atomic(path, lambda f: f.write(buf.getvalue().encode()))

# ------------------------------------------------------------------------------------------------------ checking inputs
def _check_settings(data, model, activation, seed, epochs, batch_size, width=None, optimizer=None, schedule=None,
                    limit=None, lr=None):
    "The run's settings, checked (None: not given); TypeError or ValueError naming the argument"
    from dlcourse.activations import ACTIVATIONS
    from dlcourse.core import check_choice, check_positive, check_seed
    if data is not None: check_choice(data, 'data', IMAGES + TOY)
    if model is not None: check_choice(model, 'model', MODELS)
    if activation is not None: check_choice(activation, 'activation', ACTIVATIONS)
    if optimizer is not None: check_choice(optimizer, 'optimizer', OPTIMIZERS)
    if schedule is not None: check_choice(schedule, 'schedule', SCHEDULES)
    positive = lambda v, name: None if v is None else check_positive(v, name, integer=True)
    return dict(data=data, model=model, activation=activation, seed=None if seed is None else check_seed(seed),
                epochs=positive(epochs, 'epochs'), batch_size=positive(batch_size, 'batch_size'), width=positive(width, 'width'),
                optimizer=optimizer, schedule=schedule, limit=positive(limit, 'limit'),
                lr=None if lr is None else check_positive(lr, 'lr'))

def _defaults(s):
    "Fill the settings not given with the defaults of a new run"
    s = dict(s)
    s['data'] = s['data'] or 'sample'
    s['model'] = s['model'] or ('mlp' if s['data'] in TOY else 'lenet5')
    s['activation'] = s['activation'] or ('tanh' if s['model'] == 'lenet5' else 'relu')
    if s['model'] in WIDTHS: s['width'] = s['width'] or (64 if s['model'] == 'mlp' and s['data'] in TOY else WIDTHS[s['model']])
    s['optimizer'] = s['optimizer'] or 'sgd'
    s['schedule'] = s['schedule'] or 'constant'
    s['lr'] = s['lr'] or (0.001 if s['optimizer'] == 'adam' else 0.05)
    s['seed'] = 0 if s['seed'] is None else s['seed']
    s['epochs'] = s['epochs'] or (200 if s['data'] in TOY else 5)
    s['batch_size'] = s['batch_size'] or (32 if s['data'] in TOY else 64)
    return s

def _check_combination(s, momentum):
    "Refuse settings that do not go together (`s` complete: given, the checkpoint's or the defaults)"
    if s['width'] is not None and s['model'] not in WIDTHS:
        raise ValueError(f"--width: model {s['model']!r} has no width (only {', '.join(WIDTHS)} have one)")
    if s['activation'] != 'relu' and s['model'] not in ('mlp', 'lenet5'):
        raise ValueError(f"--activation: model {s['model']!r} has ReLU built in (only mlp and lenet5 take another activation)")
    if s['model'] != 'mlp' and s['data'] in TOY:
        raise ValueError(f"model {s['model']!r} needs image data (--data sample, fashion-mnist or mnist)")
    if momentum is not None and s['optimizer'] != 'sgd':
        raise ValueError(f"--momentum is SGD's: --optimizer {s['optimizer']} keeps running averages of its own")

def _resumed(ckpt, given):
    "The settings of the run in `ckpt`, with the given ones in place of its epochs and batch size; refuses another run"
    from dlcourse.checkpoint import read_checkpoint
    try:
        ck = read_checkpoint(ckpt)
        info = ck.meta.get('info')
        if not isinstance(info, dict) or not set(SETTINGS) <= set(info):
            raise ValueError(f"{ckpt} records no settings of a `dlcourse train` run (it was written by an older dlcourse, or "
                             "by Learner.save), so it cannot be checked against --data and --model")
        if set(info) != set(SETTINGS): raise ValueError(f"{ckpt} holds unknown run settings {sorted(set(info) - set(SETTINGS))}")
        try: saved = _check_settings(**{k: info[k] for k in SETTINGS})
        except (TypeError, ValueError) as e: raise ValueError(f"{ckpt} holds invalid run settings: {e}") from None
    except ValueError as e: raise _unusable(e) from None
    for k in IDENTITY:
        if given[k] is not None and given[k] != saved[k]:
            flag = '--' + k.replace('_', '-')
            raise ValueError(f"--resume: {ckpt} is a run with {flag} {saved[k]}, not {flag} {given[k]}; leave {flag} "
                             f"out to continue it, or train into another --out")
    return {k: saved[k] if given[k] is None else given[k] for k in SETTINGS}, saved, ck.hyper or {}

def _out_error(out, e):
    "The OSError `e` met while checking or writing --out, as the user's one line: what is wrong and what to do"
    why = os.strerror(e.errno) if e.errno else str(e)
    hint = {errno.EACCES: 'no permission to write there', errno.EPERM: 'no permission to write there',
            errno.EROFS: 'a read-only file system'}.get(e.errno, '')
    todo = '' if e.errno in (errno.ENOSPC, getattr(errno, 'EDQUOT', errno.ENOSPC)) else f" ({hint + ': ' if hint else ''}choose another --out)"
    return OSError(e.errno, f"--out {out} cannot hold the run's files: {why}{todo}")

def _check_path(out):
    "Refuse an --out that cannot be a folder (a file, a symbolic-link loop, a dangling link, a name too long) without writing"
    try: os.stat(out)
    except FileNotFoundError:
        if os.path.lexists(out): raise FileNotFoundError(errno.ENOENT, f"--out {out} is a symbolic link to {os.readlink(out)}, "
                                                         "which does not exist: create that folder, or choose another --out")
        return
    except OSError as e: raise _out_error(out, e) from None           # ELOOP, ENAMETOOLONG, ENOTDIR, EACCES
    if not os.path.isdir(out): raise NotADirectoryError(errno.ENOTDIR, f"--out {out} is a file, not a folder: choose another --out")

def _unusable(e):
    "A checkpoint that cannot be resumed (the ValueError `e` says why), with what to do"
    return ValueError(f"--resume: {str(e).rstrip('.')}. It cannot be continued: start a new run there with --overwrite "
                      "instead of --resume, or restore the file")

def _check_out(out, nbytes=4096):
    "Create the folder `out` if needed and write (then delete) a test file of `nbytes` there: refuse it before any work"
    from dlcourse.checkpoint import write_atomic
    _check_path(out)
    for name in OUTPUTS:
        if (out / name).is_dir(): raise IsADirectoryError(errno.EISDIR, f"--out {out}: {name} there is a folder, not a file; "
                                                                        "move it away, or choose another --out")
    created = [p for p in (out, *out.parents) if not p.exists()]
    probe = out / '.dlcourse-write-test'
    try: write_atomic(probe, lambda f: [f.write(bytes(min(1 << 20, nbytes - i))) for i in range(0, nbytes, 1 << 20)])
    except OSError as e:
        _remove_empty(created)                              # leave nothing behind: the folders made for the test too
        raise _out_error(out, e) from None
    finally:
        try: probe.unlink(missing_ok=True)
        except OSError: pass                                # no folder to hold it: the error above says why
    return created

class _Busy(BlockingIOError):
    "The output folder is locked by another run"

def _lock(out):
    """Hold an exclusive lock on the folder `out` while this run uses it (released by the system when the process ends, even
    killed); a second run into it is refused. Returns the descriptor to close, or None where the system has no locks"""
    try: import fcntl
    except ImportError: return None
    fd = os.open(out, os.O_RDONLY)
    try: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN): return None      # a file system without locks
        raise _Busy(errno.EWOULDBLOCK, f"--out {out} is in use by another `dlcourse train` that is still running: "
                                                 "wait for it to end, or choose another --out") from None
    return fd

def _remove_stale(out):
    "Remove the temporary files that a killed run (SIGKILL, power loss) left in `out`; only called while holding its lock"
    prefixes = tuple(f'.{name}.' for name in OUTPUTS + ('.dlcourse-write-test',))
    for entry in os.scandir(out):
        if entry.name.startswith(prefixes) and entry.name.endswith('.tmp') and entry.is_file(follow_symlinks=False):
            try: os.unlink(entry.path)
            except OSError: pass

def _remove_empty(folders):
    "Remove `folders` (deepest first) as long as they are empty"
    for p in folders:
        try: p.rmdir()
        except OSError: break

def _checkpoint_bytes(net, states):
    "About the size of a checkpoint of `net` whose optimiser keeps `states` arrays per parameter, plus room for the plots"
    params = sum(p.data.nbytes for p in net.parameters())
    return params * (1 + states) + sum(b.nbytes for _, b in net.named_buffers()) + (1 << 20)

# ------------------------------------------------------------------------------------------------------------- training
def train(data=None,        # data set: IMAGES or TOY (default 'sample'; resuming: the checkpoint's)
          model=None,       # one of MODELS (default: lenet5 for images, mlp for toy problems), adapted as ADAPT says
          epochs=None,      # total epochs (default: 5 for images, 200 for toy problems)
          lr=None,          # initial learning rate (default 0.05 with SGD, 0.001 with Adam)
          momentum=None,    # SGD momentum (default 0.9)
          batch_size=None,  # examples per step, over all processes (default: 64 for images, 32 for toy problems)
          seed=None,        # seed of data split, weights and batch order (default 0)
          out=None,         # output folder (default runs/MODEL-DATA)
          resume=False,     # continue the run whose checkpoint is in `out` (see RULES)
          overwrite=False,  # replace the checkpoint of an earlier run in `out`
          progress=True,    # a progress bar (on stderr, only if it is a terminal)
          activation=None,  # hidden layers' activation of mlp and lenet5 (default: tanh for lenet5, relu otherwise)
          width=None,       # mlp: hidden units (256; 64 for toy problems); vgg16, resnet18: channels of the first stage (64)
          optimizer=None,   # 'sgd' (default) or 'adam'
          schedule=None,    # learning rate per epoch: 'constant' (default), 'step' (x0.1 every third of the epochs), 'cosine'
          limit=None,       # use at most this many examples of each of the training, validation and test sets
          engine='numba',   # 'numba' (the course's kernels) or 'torch' (PyTorch, one or several processes: torchrun)
          device=None):     # with engine 'torch': 'cpu' or 'cuda' (default: cuda if there is one)
    "Train `model` on `data`, checkpointing to `out`; returns (learner, test metrics). The rules: `RULES`"
    from dlcourse.core import as_path, check_bool, check_choice, check_number
    given = _check_settings(data, model, activation, seed, epochs, batch_size, width, optimizer, schedule, limit, lr)
    momentum = None if momentum is None else check_number(momentum, 'momentum', low=0)
    resume, overwrite, progress = (check_bool(v, n) for v, n in ((resume, 'resume'), (overwrite, 'overwrite'), (progress, 'progress')))
    if resume and overwrite: raise ValueError("--resume and --overwrite exclude each other: continue the run, or replace it")
    check_choice(engine, 'engine', ENGINES)
    if device is not None:
        check_choice(device, 'device', ('cpu', 'cuda'))
        if engine != 'torch': raise ValueError("--device is for --engine torch (the numba engine runs on the CPU)")
    world = _world()
    if world > 1 and engine != 'torch': raise ValueError("several processes (torchrun) need --engine torch")
    fresh = _defaults(given)
    if out is not None:
        as_path(out, 'out')                                # TypeError for anything but a str or a path
        if not os.fspath(out).strip(): raise ValueError("--out must not be empty")
    out = Path(out) if out is not None else Path('runs') / f"{fresh['model']}-{fresh['data']}"
    ckpt = out / 'checkpoint.npz'
    _check_path(out)
    if resume and not _exists(ckpt): raise FileNotFoundError(errno.ENOENT, _NO_CHECKPOINT.format(ckpt=ckpt))
    if not resume: _check_combination(fresh, momentum)      # before any folder is made
    first = _rank() == 0                                    # several processes (torchrun): the first one writes
    created, lock, ctx = _check_out(out) if first else [], None, None
    try:
        if first:
            lock = _lock(out)                               # from here on no other run writes into `out`
            _remove_stale(out)
        if resume:
            if not _exists(ckpt): raise FileNotFoundError(errno.ENOENT, _NO_CHECKPOINT.format(ckpt=ckpt))
            s, saved, hyper = _resumed(ckpt, given)
        else:
            if _exists(ckpt) and not overwrite:
                raise FileExistsError(errno.EEXIST, f"{ckpt} holds the checkpoint of an earlier run: continue it with "
                                                    "--resume, replace it with --overwrite, or choose another --out")
            s, saved, hyper = fresh, None, None
        _check_combination(s, momentum)
        if s['batch_size'] % world:
            raise ValueError(f"--batch-size {s['batch_size']} must be a multiple of the {world} processes (each takes an equal share)")
        if engine == 'torch':
            from dlcourse import torch_engine
            ctx = torch_engine.start(device, world)        # ImportError in one line without PyTorch; the process group
        changed = None if saved is None else (
            [f"--{k.replace('_', '-')} {saved[k]} -> {given[k]}" for k in ('epochs', 'batch_size', 'lr') if given[k] not in (None, saved[k])]
            + ([f"--momentum {hyper.get('momentum')} -> {momentum}"] if momentum not in (None, hyper.get('momentum')) else []))
        return _run(s, momentum, out, ckpt, changed, progress, ctx)
    except _Busy: raise                                     # the folder is the other run's: leave it alone
    except BaseException:
        _remove_empty(created)                              # a run that wrote nothing leaves no folder either
        raise
    finally:
        if lock is not None: os.close(lock)

_NO_CHECKPOINT = ("--resume: no checkpoint at {ckpt} to continue: give the --out of the run to continue, or leave out "
                  "--resume to start a new run there")

def _exists(ckpt):
    "Whether `ckpt` exists (a dangling link or a link loop does not)"
    try: os.stat(ckpt); return True
    except FileNotFoundError: return False
    except OSError as e:
        if e.errno == errno.ELOOP: return False
        raise _out_error(ckpt.parent, e) from None

class Terminated(KeyboardInterrupt):
    "SIGTERM (`kill`, a batch system's time limit): the run stops as for Ctrl-C and says what it leaves"

def _truth(learner, ckpt):
    "What an interrupted run leaves in `ckpt`"
    last = learner.last_checkpoint if learner is not None else None
    if last is not None and last[0] == ckpt: return f"the checkpoint of epoch {last[1]} is {ckpt}; continue with --resume"
    return "no checkpoint of this run was written yet (one is written after every epoch)" + (
        f"; {ckpt} still holds the earlier run's" if ckpt.exists() else '')

def _optimizer(s, net, momentum):
    "The run's optimiser and learning-rate schedule (None for a constant rate)"
    from dlcourse.optim import SGD, Adam, CosineAnnealingLR, StepLR
    if s['optimizer'] == 'adam': opt = Adam(net.parameters(), lr=s['lr'])
    else: opt = SGD(net.parameters(), lr=s['lr'], momentum=0.9 if momentum is None else momentum)
    sched = {'constant': lambda: None, 'step': lambda: StepLR(opt, step_size=max(1, s['epochs'] // 3), gamma=0.1),
             'cosine': lambda: CosineAnnealingLR(opt, T_max=s['epochs'])}[s['schedule']]()
    return opt, sched

def _describe(s, opt, n_params, out, ctx):
    "The line that says what is trained, how and where"
    how = (f"SGD lr {opt.lr:.6g}, momentum {opt.hyper['momentum']}" if s['optimizer'] == 'sgd' else f"Adam lr {opt.lr:.6g}")
    how += '' if s['schedule'] == 'constant' else f" ({s['schedule']} schedule from {s['lr']})"
    where = 'numba engine' if ctx is None else f"torch engine on {ctx.device}" + (f", {ctx.world} processes" if ctx.world > 1 else '')
    width = '' if s['width'] is None else f", width {s['width']}"
    act = f", activation {s['activation']}" if s['model'] in ('mlp', 'lenet5') else ''
    return (f"model: {s['model']}{width}, {n_params:,} parameters{act}; {how}, batch {s['batch_size']}, {s['epochs']} "
            f"epoch{'s' * (s['epochs'] != 1)}; {where}; output in {out}/")

def _run(s, momentum, out, ckpt, changed, progress, ctx):
    "Load the data, build the model and the learner (from the checkpoint if `changed` is not None), train, test, report"
    from dlcourse.core import manual_seed
    from dlcourse.data import DataLoader
    from dlcourse.learner import Learner
    from dlcourse.losses import CrossEntropyLoss
    start, learner, phase, trained = time.perf_counter(), None, 'before training started', False
    rank, world = (0, 1) if ctx is None else (ctx.rank, ctx.world)
    try:
        (xtr, ytr), (xva, yva), (xte, yte) = load_data(s['data'], s['seed'], s['limit'])
        if not (len(xtr) and len(xte)):
            raise ValueError(f"--data {s['data']} holds {len(xtr)} training and {len(xte)} test examples: there is nothing "
                             "to train on or to test; check the data set's files")
        num_classes = int(max(ytr.max(), yte.max())) + 1
        transform = input_transform(s['model'], xtr.shape)
        batches = lambda x, y, size, **kw: Batches(DataLoader(x, y, batch_size=size, **kw), transform, rank, world)
        eval_batch = 64 if s['model'] == 'alexnet' else 512
        manual_seed(s['seed'])
        net = build_model(s['model'], xtr[:1] if transform is None else transform(xtr[:1]), num_classes, s['activation'], s['width'])
        opt, sched = _optimizer(s, net, momentum)
        learner = Learner(net, CrossEntropyLoss(), opt, batches(xtr, ytr, s['batch_size'], seed=s['seed']),
                          batches(xva, yva, eval_batch, shuffle=False))
        if changed is not None:
            try: learner.load(ckpt)                             # the checkpoint's hyper-parameters, then the given ones
            except ValueError as e: raise _unusable(e) from None
            if momentum is not None: opt.hyper['momentum'] = momentum
            print(f"resumed from {ckpt} after epoch {learner.epoch}" +
                  (f"; changed from the checkpoint: {', '.join(changed)}" if changed else ", with the checkpoint's settings"))
        opt.lr = s['lr']                                        # the initial rate; the schedule's for the epochs done
        if sched is not None:
            sched.set_epoch(learner.epoch)
            learner.on_epoch_end.append(lambda l: sched.set_epoch(l.epoch) if l.epoch < s['epochs'] else None)
        learner.info = dict(s)
        if rank == 0: _check_out(out, _checkpoint_bytes(net, 2 if s['optimizer'] == 'adam' else int(bool(opt.hyper['momentum']))))
        engine = None if ctx is None else ctx.engine(learner)
        n_params, remaining = sum(p.size for p in net.parameters()), s['epochs'] - learner.epoch
        if remaining > 0: phase = None                          # from the banner on: in the epoch after learner.epoch
        print(f"data: {s['data']}, {len(xtr):,} training / {len(xva):,} validation / {len(xte):,} test examples, {num_classes} classes")
        print(_describe(s, opt, n_params, out, ctx))
        if remaining > 0:
            with np.errstate(over='ignore', invalid='ignore', divide='ignore'):   # the divergence guard says it in one line
                if engine is None: learner.fit(remaining, checkpoint=ckpt, progress=progress, log=True, plot=False)
                else: engine.fit(remaining, checkpoint=ckpt if rank == 0 else None, progress=progress and rank == 0)
        else: print(f"the checkpoint is at epoch {learner.epoch} of {s['epochs']}: nothing to train (a larger --epochs trains on)")
        trained, phase = True, 'while testing, after training'
        test_dl = batches(xte, yte, eval_batch, shuffle=False)
        test = learner.evaluate(test_dl) if engine is None else engine.evaluate(test_dl)
    except KeyboardInterrupt as e:
        _tell(e, phase or f'in epoch {learner.epoch + 1}', learner, ckpt, trained)
        raise
    finally:
        if learner is not None and len(learner.history) and rank == 0:
            try: _save_curves(learner.history, out / 'curves.png'); _save_history(learner.history, out / 'history.csv')
            except OSError:
                if trained: raise                              # else the error that stopped training is the one to tell
            except KeyboardInterrupt as e:                     # each file is whole: the new one, or the one before
                _tell(e, 'while writing the learning curves and the history', learner, ckpt, trained,
                      f"; {out / 'curves.png'} and {out / 'history.csv'} may be missing or an earlier epoch's")
                raise
    try:
        print(f"final test accuracy {test.get('accuracy', float('nan')):.2%}, test loss {test['loss']:.4f} on {len(xte):,} "
              f"examples; {time.perf_counter() - start:.0f} s")
        print(f"wrote {ckpt}, {out / 'curves.png'}, {out / 'history.csv'}")
    except KeyboardInterrupt as e:
        _tell(e, 'after training and testing', learner, ckpt, trained)
        raise
    return learner, test

def _tell(e, when, learner, ckpt, trained, more=''):
    """Say on stderr what an interrupt (Ctrl-C, or SIGTERM: `Terminated`) `when` leaves, unless that was said already;
    marks `e` as told (the command then exits with 130 or 143 without a second line)"""
    if getattr(e, 'told', False): return
    how = 'terminated (SIGTERM)' if isinstance(e, Terminated) else 'interrupted'
    truth = (f"training is complete; the checkpoint of epoch {learner.epoch} is {ckpt}" if trained else _truth(learner, ckpt))
    print(f"\n{how} {when}: {truth}{more}", file=sys.stderr)
    e.told = True

# ------------------------------------------------------------------------------------------------------------ the command
def _number(kind, low=0, low_open=True):
    "An argparse type: a finite `kind` number above `low` (or at least `low` if not `low_open`)"
    def parse(text):
        try: v = kind(text)
        except ValueError: raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if not math.isfinite(v): raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if v < low or (low_open and v == low): raise argparse.ArgumentTypeError(
            f"must be {'positive' if low_open else f'at least {low}'}, got {text}")
        return v
    return parse

class _Parser(argparse.ArgumentParser):
    "Errors in one line (no usage block): `dlcourse train: error: ...`"
    def error(self, message): self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

def _parser():
    from dlcourse.activations import ACTIVATIONS
    from dlcourse import __version__
    parser = _Parser(prog='dlcourse', description='dlcourse: train the course networks from the command line')
    parser.add_argument('--version', action='version', version=f'dlcourse {__version__}')
    sub = parser.add_subparsers(dest='command', required=True)
    from dlcourse import notebooks
    notebooks.add_parser(sub)                                  # dlcourse notebooks DIR: the course, out of the package
    tr = sub.add_parser('train', help='train a network, report its test accuracy, save checkpoint and curves',
                        description='Train a network with mini-batch SGD or Adam and save a checkpoint (every epoch), '
                                    'the learning curves (PNG) and the history (CSV) in --out.',
                        epilog=ADAPT + '\n\n' + RULES + '\n\n' + DISTRIBUTED, formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument('--data', choices=IMAGES + TOY,
                    help='sample: the Fashion-MNIST sample shipped with the package (default); fashion-mnist, mnist: the '
                         'full data sets; spirals, moons, xor, separable: 2-D toy problems')
    tr.add_argument('--model', choices=MODELS, help='network (default: lenet5 for images, mlp for toy problems); how each '
                                                    'reads the images: see below')
    tr.add_argument('--width', type=_number(int), help='mlp: hidden units (default 256, 64 for toy problems); vgg16, resnet18: '
                                                       'channels of the first stage (default 64, as the originals)')
    tr.add_argument('--activation', choices=list(ACTIVATIONS),
                    help="the hidden layers' activation of mlp and lenet5 (default: tanh for lenet5, as LeCun's, relu for mlp)")
    tr.add_argument('--optimizer', choices=OPTIMIZERS, help='sgd (default, with momentum) or adam')
    tr.add_argument('--schedule', choices=SCHEDULES, help='learning rate per epoch: constant (default), step (x0.1 after '
                                                          'every third of the epochs) or cosine (from --lr down to 0)')
    tr.add_argument('--epochs', type=_number(int), help='total epochs (default: 5 for images, 200 for toy problems)')
    tr.add_argument('--lr', type=_number(float), help='(initial) learning rate (default: 0.05 with sgd, 0.001 with adam)')
    tr.add_argument('--momentum', type=_number(float, low_open=False), help='SGD momentum (default: 0.9)')
    tr.add_argument('--batch-size', type=_number(int), help='examples per step, over all processes (default: 64 for images, '
                                                            '32 for toy problems)')
    tr.add_argument('--limit', type=_number(int), help='use at most this many examples of the training, validation and test '
                                                       'sets (a quick trial run)')
    tr.add_argument('--seed', type=_number(int, low_open=False), help='random seed for data split, weights and batch order (default: 0)')
    tr.add_argument('--out', help='output folder (default: runs/MODEL-DATA)')
    again = tr.add_mutually_exclusive_group()
    again.add_argument('--resume', action='store_true', help='continue the run whose checkpoint is in --out (see below)')
    again.add_argument('--overwrite', action='store_true', help='replace the checkpoint of an earlier run in --out')
    tr.add_argument('--quiet', action='store_true', help='no progress bar (there is none either when stderr is not a terminal)')
    tr.add_argument('--engine', choices=ENGINES, default='numba',
                    help="numba (default): the course's kernels; torch: the same model trained by PyTorch (pip install "
                         "\"dlcourse[torch]\"), also on a GPU and in several processes (see below)")
    tr.add_argument('--device', choices=('cpu', 'cuda'), help='with --engine torch: where to train (default: cuda if there is a GPU)')
    return parser

class _OutputFailed(OSError):
    "Writing the standard output failed for another reason than a closed pipe (a full disk behind `> log`)"

class _Stdout:
    "The standard output of the command: a failed write is reported as the output's (not as --out's), a closed pipe as such"
    def __init__(self, stream): self._stream = stream
    def __getattr__(self, name): return getattr(self._stream, name)
    def write(self, text): return self._do(self._stream.write, text)
    def flush(self): return self._do(self._stream.flush)
    def _do(self, f, *args):
        try: return f(*args)
        except BrokenPipeError: raise
        except OSError as e:
            full = e.errno in (errno.ENOSPC, getattr(errno, 'EDQUOT', errno.ENOSPC))
            raise _OutputFailed(e.errno, f"could not write the standard output: {os.strerror(e.errno) if e.errno else e} ("
                                + ('the disk is full: free some space, or ' if full else '') + "send it elsewhere)") from None

def _message(e):
    "An exception as one line for the user (at most about 1000 characters: a hostile file's name or field is cut short)"
    if isinstance(e, OSError) and e.strerror:
        msg = e.strerror + (f": {e.filename}" if e.filename else '')
        if e.errno in (errno.ENOSPC, getattr(errno, 'EDQUOT', errno.ENOSPC)) and not isinstance(e, _OutputFailed):
            msg += ' (the disk is full: free some space, or choose another --out)'
    else: msg = str(e)
    msg = ' '.join(msg.split())
    return msg if len(msg) <= 1000 else f"{msg[:600]} [... {len(msg) - 900:,} characters ...] {msg[-300:]}"

def _quiet(*streams):
    "Send `streams` to /dev/null: nothing more is written to a closed pipe or a full disk (not even at exit)"
    try: devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError: return
    try:
        for stream in streams: os.dup2(devnull, stream.fileno())
    except (OSError, ValueError, AttributeError): pass
    finally: os.close(devnull)

def _terminate(signum, frame): raise Terminated()

def _main(argv):
    args = _parser().parse_args(argv)
    if args.command == 'notebooks':
        from dlcourse import notebooks
        return notebooks.run(args)
    if hasattr(sys.stdout, 'reconfigure'): sys.stdout.reconfigure(line_buffering=True)   # a line per epoch, also in a pipe
    try:
        if _rank() != 0: sys.stdout = open(os.devnull, 'w')    # several processes: the first one reports
        train(args.data, args.model, epochs=args.epochs, lr=args.lr, momentum=args.momentum, batch_size=args.batch_size,
              seed=args.seed, out=args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
              activation=args.activation, width=args.width, optimizer=args.optimizer, schedule=args.schedule,
              limit=args.limit, engine=args.engine, device=args.device)
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        if not getattr(e, 'told', False):                   # stopped while checking its arguments and the output folder
            print(f"\n{'terminated (SIGTERM)' if terminated else 'interrupted'} before training started: nothing was written",
                  file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:
        raise                               # main's: the reader of stdout quit
    except (ValueError, TypeError, OSError, FloatingPointError, ImportError) as e:
        return _error(e)
    finally:
        if 'dlcourse.torch_engine' in sys.modules: sys.modules['dlcourse.torch_engine'].stop()
    return 0

def _error(e):
    "Tell the error `e` in one line on stderr, after what stdout still holds; the exit status 2"
    try: sys.stdout and sys.stdout.flush()
    except _OutputFailed: _quiet(sys.stdout)            # a full disk behind stdout: what it holds is lost, the error is told
    print(f"dlcourse train: error: {_message(e)}", file=sys.stderr)
    return 2

def _world():
    "The number of processes torchrun started (WORLD_SIZE), else 1"
    return int(os.environ.get('WORLD_SIZE', '1') or 1)

def _rank():
    "This process's rank when torchrun started several (RANK), else 0"
    return int(os.environ.get('RANK', '0') or 0) if _world() > 1 else 0

def main(argv=None):
    """The `dlcourse` command; returns its exit status (0, 2 for an error, 130 for Ctrl-C, 143 for SIGTERM, 141 when the
    reader of stdout quit). A process that was part of a distributed run's process group does not return: it ends with
    `os._exit` (see `_leave`)"""
    status = _command(argv)
    if 'dlcourse.torch_engine' in sys.modules and sys.modules['dlcourse.torch_engine'].left_group: _leave(status)
    return status

def _leave(status):
    """End a process that was part of a distributed run, once its output is written and the process group destroyed, with
    os._exit: without the interpreter's shutdown, in which PyTorch's C++ teardown after a gloo process group now and then
    aborts (SIGABRT, "terminate called without an active exception", with no Python frame left; one resumed run in about
    50 on a 2-core machine). torchrun then reports the finished run as failed and stops the other processes, which may be
    writing the curves"""
    for stream in (sys.stdout, sys.stderr):
        try: stream and stream.flush()
        except (OSError, ValueError): pass
    os._exit(status)

def _command(argv):
    "The command; its exit status"
    stdout, handler = sys.stdout, None
    if stdout is not None: sys.stdout = _Stdout(stdout)     # None: stdout closed (`>&-`); print() then writes nothing
    try: handler = signal.signal(signal.SIGTERM, _terminate)      # only the main thread may; elsewhere SIGTERM stays as it is
    except (ValueError, AttributeError): pass
    try:
        status = _main(argv)
        try: sys.stdout and sys.stdout.flush()
        except _OutputFailed as e: status = _error(e)
        return status
    except BrokenPipeError:                 # `dlcourse train | head -1`: stop quietly, as a killed pipeline member would
        _quiet(stdout, sys.stderr)
        return 141
    finally:
        sys.stdout = stdout
        if handler is not None: signal.signal(signal.SIGTERM, handler)
