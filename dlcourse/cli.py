"""The `dlcourse` command: `dlcourse train` trains a network of the course on a data set from the command line, with the
training loop of lesson 07, and writes a checkpoint (every epoch), the learning curves and the history."""
import argparse
import csv
import io
import sys
import time
from pathlib import Path

import numpy as np

TOY = ('spirals', 'moons', 'xor', 'separable')
IMAGES = ('sample', 'fashion-mnist', 'mnist')
MODELS = ('mlp', 'lenet5')

def load_data(name, seed=0):
    "Train, validation and test sets (x, y) for a data set name; images come preprocessed as (N, 1, 28, 28) float32"
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

def build_model(name, x, num_classes, activation=None):
    "A model for inputs like `x`: 'mlp' for any input, 'lenet5' for 28x28 images (LeNet-5 of lesson 08)"
    from dlcourse.activations import ACTIVATIONS
    from dlcourse.core import Sequential, check_choice
    from dlcourse.layers import Flatten, Linear
    if activation is not None: check_choice(activation, 'activation', ACTIVATIONS)
    if name == 'mlp':
        act = ACTIVATIONS[activation or 'relu'].layer
        if x.ndim == 2: return Sequential(Linear(x.shape[1], 64), act(), Linear(64, 64), act(), Linear(64, num_classes))
        return Sequential(Flatten(), Linear(int(np.prod(x.shape[1:])), 256), act(), Linear(256, num_classes))
    if name == 'lenet5':
        if x.ndim != 4: raise ValueError("model 'lenet5' needs image data (--data sample, fashion-mnist or mnist)")
        from dlcourse.zoo import lenet5
        return lenet5(num_classes, activation=activation or 'tanh')
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")

def _save_curves(history, path):
    import matplotlib
    matplotlib.use('Agg', force=False) if 'matplotlib.pyplot' not in sys.modules else None
    import matplotlib.pyplot as plt
    from dlcourse.checkpoint import write_atomic
    axs = history.plot()
    fig = axs[0].figure
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format='png', dpi=100))
    plt.close(fig)

def _save_history(history, path):
    from dlcourse.checkpoint import write_atomic
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=history.columns); w.writeheader(); w.writerows(history.records)
    write_atomic(path, lambda f: f.write(buf.getvalue().encode()))

def train(data='sample', model='lenet5', epochs=None, lr=0.05, momentum=0.9, batch_size=None, seed=0, out=None,
          resume=False, progress=True, activation=None):
    "Train `model` on `data` with SGD, checkpointing to `out`; returns (learner, test metrics)"
    from dlcourse.core import check_positive, manual_seed
    from dlcourse.data import DataLoader
    from dlcourse.learner import Learner
    from dlcourse.losses import CrossEntropyLoss
    from dlcourse.optim import SGD
    if data not in IMAGES + TOY: raise ValueError(f"data must be one of {IMAGES + TOY}, got {data!r}")
    if model not in MODELS: raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    epochs = epochs if epochs is not None else (200 if data in TOY else 5)
    batch_size = batch_size if batch_size is not None else (32 if data in TOY else 64)
    check_positive(epochs, 'epochs', integer=True); check_positive(lr, 'lr'); check_positive(batch_size, 'batch_size', integer=True)
    out = Path(out if out is not None else Path('runs') / f'{model}-{data}')
    ckpt = out / 'checkpoint.npz'
    if resume and not ckpt.exists(): raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
    start = time.perf_counter()
    (xtr, ytr), (xva, yva), (xte, yte) = load_data(data, seed)
    num_classes = int(max(ytr.max(), yte.max())) + 1
    manual_seed(seed)
    net = build_model(model, xtr, num_classes, activation)
    learner = Learner(net, CrossEntropyLoss(), SGD(net.parameters(), lr=lr, momentum=momentum),
                      DataLoader(xtr, ytr, batch_size=batch_size, seed=seed),
                      DataLoader(xva, yva, batch_size=512, shuffle=False))
    if resume:
        learner.load(ckpt)
        print(f"resumed from {ckpt} after epoch {learner.epoch}")
    n_params = sum(p.size for p in net.parameters())
    print(f"data: {data}, {len(xtr):,} training / {len(xva):,} validation / {len(xte):,} test examples, {num_classes} classes")
    print(f"model: {model}, {n_params:,} parameters; SGD lr {lr}, momentum {momentum}, batch {batch_size}, {epochs} epochs; "
          f"output in {out}/")
    remaining = epochs - learner.epoch
    try:
        if remaining > 0: learner.fit(remaining, checkpoint=ckpt, progress=progress, log=True, plot=False)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the checkpoint of epoch {learner.epoch} is {ckpt}; continue with --resume", file=sys.stderr)
        raise
    finally:
        if len(learner.history):
            _save_curves(learner.history, out / 'curves.png')
            _save_history(learner.history, out / 'history.csv')
    test = learner.evaluate(DataLoader(xte, yte, batch_size=512, shuffle=False))
    print(f"final test accuracy {test.get('accuracy', float('nan')):.2%}, test loss {test['loss']:.4f} on {len(xte):,} "
          f"examples; {time.perf_counter() - start:.0f} s")
    print(f"wrote {ckpt}, {out / 'curves.png'}, {out / 'history.csv'}")
    return learner, test

def _positive(kind):
    def parse(text):
        try: v = kind(text)
        except ValueError: raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if not v > 0: raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return v
    return parse

def main(argv=None):
    "The `dlcourse` command"
    from dlcourse.activations import ACTIVATIONS
    parser = argparse.ArgumentParser(prog='dlcourse', description='dlcourse: train the course networks from the command line')
    sub = parser.add_subparsers(dest='command', required=True)
    tr = sub.add_parser('train', help='train a network, report its test accuracy, save checkpoint and curves',
                        description='Train a network with mini-batch SGD and save a checkpoint (every epoch), '
                                    'the learning curves (PNG) and the history (CSV) in --out.')
    tr.add_argument('--data', default='sample', choices=IMAGES + TOY,
                    help='sample: the Fashion-MNIST sample shipped with the package (default); fashion-mnist, mnist: the '
                         'full data sets; spirals, moons, xor, separable: 2-D toy problems')
    tr.add_argument('--model', default=None, choices=MODELS, help='network (default: lenet5 for images, mlp for toy problems)')
    tr.add_argument('--activation', default=None, choices=list(ACTIVATIONS),
                    help="the hidden layers' activation (default: tanh for lenet5, as LeCun's, relu for mlp)")
    tr.add_argument('--epochs', type=_positive(int), default=None, help='total epochs (default: 5 for images, 200 for toy problems)')
    tr.add_argument('--lr', type=_positive(float), default=0.05, help='learning rate (default: 0.05)')
    tr.add_argument('--momentum', type=float, default=0.9, help='SGD momentum (default: 0.9)')
    tr.add_argument('--batch-size', type=_positive(int), default=None, help='examples per step (default: 64 for images, 32 for toy problems)')
    tr.add_argument('--seed', type=int, default=0, help='random seed for data split, weights and batch order (default: 0)')
    tr.add_argument('--out', default=None, help='output folder (default: runs/MODEL-DATA)')
    tr.add_argument('--resume', action='store_true', help='continue from the checkpoint in --out')
    tr.add_argument('--quiet', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    model = args.model or ('mlp' if args.data in TOY else 'lenet5')
    try:
        train(args.data, model, epochs=args.epochs, lr=args.lr, momentum=args.momentum, batch_size=args.batch_size,
              seed=args.seed, out=args.out, resume=args.resume, progress=not args.quiet, activation=args.activation)
    except KeyboardInterrupt:
        return 130
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as e:
        parser.exit(2, f"dlcourse train: error: {e}\n")
    return 0