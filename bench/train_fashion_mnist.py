"""Train a zoo network on Fashion-MNIST with dlcourse, or (--torch) the same network with PyTorch on the same machine.

    python bench/train_fashion_mnist.py --model lenet5                          # LeNet-5, dlcourse
    python bench/train_fashion_mnist.py --model lenet5 --torch                  # the same with PyTorch
    python bench/train_fashion_mnist.py --model resnet18 --width 8 --epochs 15 --lr 0.1 --torch   # ResNet-18 for 28x28

The exact commands behind lesson 08a's results are listed in bench/README.md.

Both frameworks start from the same initial weights (the dlcourse model, copied to PyTorch with dlcourse.interop.to_torch)
and see the same mini-batches in the same order with the same augmentation, so their results differ only by floating-point
rounding, and their times measure the frameworks. Training: SGD with momentum and weight decay on the full training set
(60,000 images), learning rate on a cosine schedule, each batch optionally augmented by random horizontal flips and
shifts of up to 2 pixels. After every epoch the whole test set (10,000 images) is evaluated; the reported accuracy is that
of the last epoch (no selection on the test set). Times are wall-clock seconds of the training steps (forward, backward,
update, augmentation) and, separately, of the evaluation; the record also holds the process's CPU time of the
training steps, which a busy machine disturbs less than the wall-clock time. Both frameworks use --threads threads (Numba,
numpy's BLAS library, PyTorch; default 1: on a machine whose cores are shared with other work, more threads than free
cores make both much slower).

--record writes the run (settings, versions, per-epoch history, final confusion matrix) as JSON; --save-weights writes a
dlcourse checkpoint of the final weights (lesson 07's save_checkpoint) with the command line and the test accuracy in its
meta data: that is how dlcourse/data/lenet5-fashion-mnist.npz was made (see dlcourse/data/README.md).
"""
import argparse
import json
import math
import os
import platform
import shlex
import sys
import time


def threads_arg(argv, default=1):
    "The value of --threads in argv, read before numpy starts the threads of its BLAS library"
    for i, a in enumerate(argv):
        if a == '--threads' and i + 1 < len(argv): return argv[i + 1]
        if a.startswith('--threads='): return a.split('=', 1)[1]
    return str(default)


for _var in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):   # numpy's matrix products: --threads too
    os.environ.setdefault(_var, threads_arg(sys.argv))

import numpy as np  # noqa: E402

MODELS = ('lenet5', 'resnet18', 'googlenet')


def build(args, rng):
    "The dlcourse model for --model and its options"
    from dlcourse import zoo
    if args.model == 'lenet5': return zoo.lenet5(10, activation=args.activation, pool=args.pool, rng=rng)
    if args.model == 'resnet18': return zoo.resnet18(10, in_channels=1, small_input=True, width=args.width, rng=rng)
    return zoo.googlenet(10, in_channels=1, rng=rng)


def load(args):
    "Preprocessed training and test sets (x float32 (N, 1, 28, 28), y int64)"
    from dlcourse.data import fashion_mnist, fashion_mnist_sample, preprocess
    load = fashion_mnist if args.data == 'fashion-mnist' else fashion_mnist_sample
    (xtr, ytr), (xte, yte) = load('train'), load('test')
    if args.train_size: xtr, ytr = xtr[:args.train_size], ytr[:args.train_size]
    return preprocess(xtr), ytr.astype(np.int64), preprocess(xte), yte.astype(np.int64)


class Augment:
    "Random horizontal flips and shifts by up to `shift` pixels (the background fills in), one draw per image"
    def __init__(self, mode, rng, background):
        self.mode, self.rng, self.background = mode, rng, background

    def __call__(self, x):
        if self.mode == 'none': return x
        x = x.copy()
        flip = self.rng.random(len(x)) < 0.5
        x[flip] = x[flip, :, :, ::-1]
        if self.mode == 'flip': return x
        s = 2
        padded = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)), constant_values=self.background)
        dy, dx = self.rng.integers(0, 2 * s + 1, (2, len(x)))
        for i in range(len(x)): x[i] = padded[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
        return x


class DlcourseRunner:
    "One training step and batched evaluation with dlcourse"
    name = 'dlcourse'
    def __init__(self, model, args):
        from dlcourse.losses import CrossEntropyLoss
        from dlcourse.optim import SGD
        self.model, self.loss_fn = model, CrossEntropyLoss()
        self.opt = SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)

    def set_lr(self, lr): self.opt.lr = lr

    def step(self, xb, yb):
        "Train on one batch; returns (loss, correct predictions)"
        self.model.train()
        out = self.model(xb)
        loss = self.loss_fn(out, yb)
        self.opt.zero_grad()
        self.model.backward(self.loss_fn.backward())
        self.opt.step()
        return loss, int((out.argmax(1) == yb).sum())

    def predict(self, x, batch_size=1000):
        self.model.eval()
        return np.concatenate([self.model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    def dlcourse_model(self): return self.model


class TorchRunner:
    "The same with PyTorch, starting from the dlcourse model's weights"
    name = 'torch'
    def __init__(self, model, args):
        import torch
        from dlcourse.interop import to_torch
        self.torch, self.template = torch, model
        self.model = to_torch(model)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)

    def set_lr(self, lr):
        for g in self.opt.param_groups: g['lr'] = lr

    def step(self, xb, yb):
        torch = self.torch
        self.model.train()
        out = self.model(torch.from_numpy(xb))
        loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(yb))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item(), int((out.argmax(1).numpy() == yb).sum())

    def predict(self, x, batch_size=1000):
        self.model.eval()
        with self.torch.no_grad():
            return np.concatenate([self.model(self.torch.from_numpy(x[i:i + batch_size])).numpy()
                                   for i in range(0, len(x), batch_size)])

    def dlcourse_model(self):
        from dlcourse.interop import from_torch
        return from_torch(self.model, self.template)


def evaluate(runner, x, y):
    "Loss, accuracy and confusion matrix (rows: true class, columns: predicted) on (x, y)"
    from dlcourse.losses import cross_entropy
    out = runner.predict(x)
    pred = out.argmax(1)
    return cross_entropy(out.astype(np.float64), y), float((pred == y).mean()), np.bincount(y * 10 + pred, minlength=100).reshape(10, 10)


def lr_at(epoch, args):
    "Cosine schedule from --lr down to 0 over --epochs, constant within an epoch"
    return args.lr if args.schedule == 'constant' else args.lr * 0.5 * (1 + math.cos(math.pi * epoch / args.epochs))


def train(args, on_batch=None, log=print):
    """Train as `args` say; returns the record (a dict). `on_batch(step, loss, correct, n, seconds)` is called after every
    training step (seconds: training time so far)."""
    from dlcourse.core import manual_seed
    from dlcourse.data import preprocess
    manual_seed(args.seed)
    xtr, ytr, xte, yte = load(args)
    rng = np.random.default_rng(args.seed)
    model = build(args, rng)
    runner = (TorchRunner if args.torch else DlcourseRunner)(model, args)
    background = float(preprocess(np.zeros((1, 28, 28), np.uint8))[0, 0, 0, 0])
    augment = Augment(args.augment, np.random.default_rng(args.seed + 1), background)
    order_rng = np.random.default_rng(args.seed + 2)
    history, train_seconds, step = [], 0.0, 0
    n_params = sum(p.size for p in model.parameters())
    log(f"{runner.name}: {args.model}, {n_params:,} parameters; {len(xtr):,} training images, {len(xte):,} test images; "
        f"batch {args.batch_size}, lr {args.lr} ({args.schedule}), momentum {args.momentum}, weight decay {args.weight_decay}, "
        f"augment {args.augment}, {args.epochs} epochs")
    for epoch in range(args.epochs):
        lr = lr_at(epoch, args)
        runner.set_lr(lr)
        order = order_rng.permutation(len(xtr))
        loss_sum = correct = n = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        for i in range(0, len(xtr) - args.batch_size + 1, args.batch_size):      # whole batches only
            idx = order[i:i + args.batch_size]
            loss, c = runner.step(augment(xtr[idx]), ytr[idx])
            if not np.isfinite(loss): raise FloatingPointError(f"the loss became {loss} in epoch {epoch + 1}")
            loss_sum, correct, n, step = loss_sum + loss * len(idx), correct + c, n + len(idx), step + 1
            if on_batch is not None: on_batch(step, loss, c, len(idx), train_seconds + time.perf_counter() - start)
        epoch_seconds, epoch_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        train_seconds += epoch_seconds
        start = time.perf_counter()
        test_loss, test_acc, confusion = evaluate(runner, xte, yte)
        eval_seconds = time.perf_counter() - start
        history.append(dict(epoch=epoch + 1, lr=lr, train_loss=loss_sum / n, train_acc=correct / n, test_loss=test_loss,
                            test_acc=test_acc, train_seconds=round(epoch_seconds, 2), train_cpu_seconds=round(epoch_cpu, 2),
                            eval_seconds=round(eval_seconds, 2)))
        log(f"epoch {epoch + 1:3d}  lr {lr:.4f}  train loss {loss_sum / n:.4f} acc {correct / n:.4f}  "
            f"test loss {test_loss:.4f} acc {test_acc:.4f}  {epoch_seconds:.1f} s (+{eval_seconds:.1f} s eval)")
    record = dict(framework=runner.name, model=args.model, parameters=int(n_params), config=vars(args).copy(),
                  command='python ' + ' '.join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:]),
                  versions=versions(args.torch), history=history, test_accuracy=history[-1]['test_acc'],
                  train_seconds=round(train_seconds, 1), confusion=confusion.tolist())
    if args.torch:   # the trained weights brought back: the course's own forward pass must agree
        class Back(DlcourseRunner):
            def __init__(self, model): self.model = model
        _, record['test_accuracy_in_dlcourse'], _ = evaluate(Back(runner.dlcourse_model()), xte, yte)
    log(f"{runner.name}: test accuracy {record['test_accuracy']:.2%} after {args.epochs} epochs; "
        f"training {train_seconds:.0f} s ({train_seconds / args.epochs:.1f} s per epoch)"
        + (f"; the weights in dlcourse: {record['test_accuracy_in_dlcourse']:.2%}" if args.torch else ''))
    return record, runner


def versions(torch_too):
    "Versions and thread counts, for the record"
    import numba
    import dlcourse
    v = dict(python=platform.python_version(), numpy=np.__version__, numba=numba.__version__,
             numba_threads=numba.get_num_threads(), dlcourse=dlcourse.__version__, cpus=os.cpu_count(),
             machine=platform.machine(), processor=platform.processor())
    if torch_too:
        import torch
        v.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    return v


def parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', choices=MODELS, default='lenet5')
    p.add_argument('--activation', choices=('tanh', 'relu', 'sigmoid'), default='tanh', help='LeNet-5 only (default tanh)')
    p.add_argument('--pool', choices=('avg', 'max'), default='max', help='LeNet-5 only (default max)')
    p.add_argument('--width', type=int, default=8, help='ResNet-18 only: channels of the first stage (default 8)')
    p.add_argument('--torch', action='store_true', help='train with PyTorch instead of dlcourse')
    p.add_argument('--data', choices=('fashion-mnist', 'sample'), default='fashion-mnist')
    p.add_argument('--train-size', type=int, default=None, help='use only the first N training images')
    p.add_argument('--epochs', type=int, default=30)
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--lr', type=float, default=0.05)
    p.add_argument('--schedule', choices=('cosine', 'constant'), default='cosine')
    p.add_argument('--momentum', type=float, default=0.9)
    p.add_argument('--weight-decay', type=float, default=5e-4)
    p.add_argument('--augment', choices=('none', 'flip', 'flip-shift'), default='flip')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=1,
                   help="threads of Numba, numpy's BLAS (and PyTorch with --torch); default 1, also fastest on a shared machine")
    p.add_argument('--record', help='write the run as JSON to this file')
    p.add_argument('--save-weights', help='write a dlcourse checkpoint of the trained model to this .npz file')
    return p


def set_threads(n, torch_too):
    "Use n threads in Numba's parallel loops (and in PyTorch)"
    import numba
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if torch_too:
        import torch
        torch.set_num_threads(n)


def main(argv=None):
    args = parser().parse_args(argv)
    set_threads(args.threads, args.torch)
    record, runner = train(args)
    if args.record:
        with open(args.record, 'w') as f: json.dump(record, f, indent=1)
        print(f"wrote {args.record}")
    if args.save_weights:
        from dlcourse.checkpoint import save_checkpoint
        save_checkpoint(args.save_weights, runner.dlcourse_model(), command=record['command'],
                        test_accuracy=record['test_accuracy'], epochs=args.epochs, data=args.data,
                        framework=record['framework'], versions=record['versions'])
        os.chmod(args.save_weights, 0o644)                # package data: readable by everyone
        print(f"wrote {args.save_weights}")


if __name__ == '__main__':
    main()
