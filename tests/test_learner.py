"""The training loop: checkpoints (atomic, checked, bit-exact), resume = uninterrupted, divergence guard, hooks."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dlcourse as dl
from dlcourse.checkpoint import load_checkpoint, save_checkpoint
from dlcourse.learner import Learner, TrainingDiverged
from dlcourse.losses import CrossEntropyLoss
from dlcourse.optim import SGD
from dlcourse.data import DataLoader

rng = np.random.default_rng(0)
CENTERS = rng.normal(0, 1.5, (4, 8))


def blobs(n, seed):
    r = np.random.default_rng(seed)
    y = r.integers(0, 4, n)
    return (CENTERS[y] + r.normal(size=(n, 8))).astype(np.float32), y


TRAIN, VALID = blobs(600, 1), blobs(200, 2)


def make(seed=0, lr=0.05, momentum=0.9):
    dl.manual_seed(seed)
    model = dl.Sequential(dl.Linear(8, 16), dl.ReLU(), dl.Linear(16, 4))
    return Learner(model, CrossEntropyLoss(), SGD(model.parameters(), lr=lr, momentum=momentum),
                   DataLoader(*TRAIN, batch_size=32, seed=seed), DataLoader(*VALID, batch_size=100, shuffle=False))


def fit(learner, epochs, **kw): return learner.fit(epochs, progress=False, plot=False, **kw)


def weights(learner): return [p.data.copy() for p in learner.model.parameters()]


def test_learns_and_records_history():
    h = fit(make(), 4)
    assert len(h) == 4 and h.columns == ['epoch', 'train_loss', 'train_accuracy', 'valid_loss', 'valid_accuracy', 'time']
    assert h['train_loss'][-1] < h['train_loss'][0] and h['valid_accuracy'][-1] > 0.8
    assert 'valid_accuracy' in repr(h)


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    a = make(seed=3)
    fit(a, 2)
    a.save(tmp_path/'a.npz')
    b = make(seed=4).load(tmp_path/'a.npz')
    for x, y in zip(weights(a), weights(b)): np.testing.assert_array_equal(x, y)
    assert b.epoch == 2 and b.history.records == a.history.records
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    for i in sa['state']: np.testing.assert_array_equal(sa['state'][i]['momentum_buffer'], sb['state'][i]['momentum_buffer'])


def test_resume_equals_uninterrupted(tmp_path):
    straight = make(seed=5)
    fit(straight, 4)
    first = make(seed=5)
    fit(first, 2, checkpoint=tmp_path/'ck.npz')
    resumed = make(seed=123).load(tmp_path/'ck.npz')      # other initial weights and loader seed: all restored
    fit(resumed, 2)
    for x, y in zip(weights(straight), weights(resumed)): np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(straight.history['train_loss'], resumed.history['train_loss'])


def test_resume_across_processes(tmp_path):
    "Two processes (2 + 2 epochs) give the weights of one process training 4 epochs"
    from conftest import child_env         # here, not at the top: the child imports this module, and needs no conftest
    script = textwrap.dedent(f'''
        import sys, numpy as np
        from test_learner import make, fit, weights
        mode, path = sys.argv[1], sys.argv[2]
        l = make(seed=7)
        if mode == 'resume': l.load(path)
        fit(l, 4 if mode == 'straight' else 2, checkpoint=path)
        np.save(path + '.w.npy', np.concatenate([w.ravel() for w in weights(l)]))
    ''')
    run = lambda *a: subprocess.run([sys.executable, '-c', script, *a], check=True, capture_output=True, env=child_env())
    run('straight', str(tmp_path/'s.npz'))
    run('first', str(tmp_path/'r.npz'))
    run('resume', str(tmp_path/'r.npz'))
    np.testing.assert_array_equal(np.load(tmp_path/'s.npz.w.npy'), np.load(tmp_path/'r.npz.w.npy'))


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    l = make()
    fit(l, 1, checkpoint=tmp_path/'ck.npz')
    before = (tmp_path/'ck.npz').read_bytes()

    def broken_savez(f, **arrays):
        f.write(b'PK\x03\x04 half a zip file')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(np, 'savez', broken_savez)
    with pytest.raises(OSError, match='could not write .*No space left on device; the previous file there is intact'):
        fit(l, 1, checkpoint=tmp_path/'ck.npz')
    assert (tmp_path/'ck.npz').read_bytes() == before
    assert os.listdir(tmp_path) == ['ck.npz']                  # the temporary file is gone


def test_divergence_names_epoch_and_batch_and_keeps_checkpoint(tmp_path):
    l = make(lr=0.05)
    fit(l, 1, checkpoint=tmp_path/'ck.npz')
    before = (tmp_path/'ck.npz').read_bytes()
    l.optimizer.lr = 1e8
    with np.errstate(all='ignore'), pytest.raises(TrainingDiverged, match=r'epoch 2, batch \d+: training diverged. Try a lower learning rate'):
        fit(l, 3, checkpoint=tmp_path/'ck.npz')
    assert (tmp_path/'ck.npz').read_bytes() == before


def test_refuses_other_architecture_and_corruption(tmp_path):
    l = make()
    l.save(tmp_path/'ck.npz')
    other = dl.Sequential(dl.Linear(8, 32), dl.ReLU(), dl.Linear(32, 4))
    with pytest.raises(ValueError, match='another architecture'):
        load_checkpoint(tmp_path/'ck.npz', other)
    data = bytearray((tmp_path/'ck.npz').read_bytes())
    (tmp_path/'trunc.npz').write_bytes(bytes(data[:len(data) // 2]))
    with pytest.raises(ValueError, match='truncated or corrupted'):
        load_checkpoint(tmp_path/'trunc.npz', l.model)
    # flip one byte inside the first parameter's data: the zip still reads, the checksum does not match
    w = l.model[0].weight.data
    pos = bytes(data).find(w.tobytes()[:16])
    assert pos > 0
    data[pos + 3] ^= 0xFF
    (tmp_path/'flip.npz').write_bytes(bytes(data))
    with pytest.raises(ValueError, match='corrupted'):
        load_checkpoint(tmp_path/'flip.npz', l.model)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path/'missing.npz', l.model)
    before = weights(l)
    for x, y in zip(before, weights(l)): np.testing.assert_array_equal(x, y)   # refused loads changed nothing


def test_hooks_and_evaluate_and_predict():
    l = make()
    batches, epochs = [], []
    l.on_batch_end.append(lambda learner: batches.append(learner.loss))
    l.on_epoch_end.append(lambda learner: epochs.append(learner.epoch))
    fit(l, 2)
    assert len(batches) == 2 * len(l.train_dl) and epochs == [1, 2]
    ev = l.evaluate(l.valid_dl)
    assert set(ev) == {'loss', 'accuracy'} and ev['accuracy'] == pytest.approx(l.history['valid_accuracy'][-1])
    assert l.predict(VALID[0]).shape == (200, 4)
    assert l.model.training


def test_progress_output_in_terminal(capsys):
    make().fit(1, plot=False)
    out = capsys.readouterr().out
    assert 'epoch 1  train_loss' in out and 'valid_accuracy' in out


@pytest.mark.parametrize('call,exc,fragment', [
    (lambda m: Learner(m, dl.MSELoss, SGD(m.parameters(), lr=0.1), []), TypeError, 'loss_fn must be a Loss'),
    (lambda m: Learner(m, CrossEntropyLoss(), m.parameters(), []), TypeError, 'optimizer must be an Optimizer'),
    (lambda m: Learner('net', CrossEntropyLoss(), SGD(m.parameters(), lr=0.1), []), TypeError, 'model must be a Module'),
    (lambda m: Learner(m, CrossEntropyLoss(), SGD(m.parameters(), lr=0.1), 3), TypeError, 'train_dl must be an iterable'),
    (lambda m: Learner(m, CrossEntropyLoss(), SGD(m.parameters(), lr=0.1), []).fit(0), ValueError, 'epochs must be a positive integer'),
    (lambda m: save_checkpoint('/tmp/x.npz', 'model'), TypeError, 'model must be a Module'),
])
def test_bad_input(call, exc, fragment):
    with pytest.raises(exc) as info:
        call(dl.Sequential(dl.Linear(8, 4)))
    assert fragment in str(info.value)
