"""Child process for tests/test_faults.py: trains a small network with a checkpoint after every epoch.

    python fault_child.py train CKPT EPOCHS [--resume] [--slow-write]

--slow-write makes each checkpoint write take a while (the test harness wraps np.savez, not the package) and touches
CKPT.writing while the write is half done, so the parent can kill the process in the middle of it. At the end the final
weights are saved to CKPT.final.npy.
"""
import sys
import time
from pathlib import Path

import numpy as np

import dlcourse as dl
from dlcourse.learner import Learner
from dlcourse.losses import CrossEntropyLoss
from dlcourse.optim import SGD
from dlcourse.data import DataLoader

CENTERS = np.random.default_rng(0).normal(0, 1.5, (4, 16))


def blobs(n, seed):
    r = np.random.default_rng(seed)
    y = r.integers(0, 4, n)
    return (CENTERS[y] + r.normal(size=(n, 16))).astype(np.float32), y


def make_learner(seed=0):
    dl.manual_seed(seed)
    model = dl.Sequential(dl.Linear(16, 256), dl.ReLU(), dl.Linear(256, 256), dl.ReLU(), dl.Linear(256, 4))
    return Learner(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.02, momentum=0.9),
                   DataLoader(*blobs(3000, 1), batch_size=32, seed=seed))


def main(argv):
    _, ckpt, epochs, *flags = argv
    ckpt, epochs = Path(ckpt), int(epochs)
    if '--slow-write' in flags:
        real_savez = np.savez

        def slow_savez(f, **arrays):
            import io
            buf = io.BytesIO(); real_savez(buf, **arrays)
            data = buf.getvalue()
            f.write(data[:len(data) // 2]); f.flush()
            Path(str(ckpt) + '.writing').touch()          # the parent may kill us now, mid-write
            time.sleep(0.5)
            f.write(data[len(data) // 2:])
            Path(str(ckpt) + '.writing').unlink(missing_ok=True)
        np.savez = slow_savez
    learner = make_learner()
    if '--resume' in flags and ckpt.exists(): learner.load(ckpt)
    if learner.epoch < epochs: learner.fit(epochs - learner.epoch, checkpoint=ckpt, progress=False, log=False, plot=False)
    np.save(str(ckpt) + '.final.npy', np.concatenate([p.data.ravel() for p in learner.model.parameters()]))


if __name__ == '__main__':
    main(sys.argv[1:])
