"""Checkpoints and the training loop under bad luck: non-finite weights are never saved, failures say truthfully what the
checkpoint file holds, empty loaders are errors, files honour the umask, and a checkpoint whose header was edited (by
hand, by a bug, by a damaged disk) either loads with valid values or is refused with one ValueError, changing nothing."""
import copy
import json
import os
import signal
import stat
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

import dlcourse as dl
from dlcourse import checkpoint as ckmod
from dlcourse.checkpoint import read_checkpoint, save_checkpoint, write_atomic
from dlcourse.cli import _resumed
from dlcourse.data import DataLoader
from dlcourse.learner import Learner, TrainingDiverged
from dlcourse.losses import CrossEntropyLoss
from dlcourse.optim import SGD

X = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int64)


def make(seed=0, lr=0.1, valid=True, batch_size=16):
    dl.manual_seed(seed)
    model = dl.Sequential(dl.Linear(4, 8), dl.ReLU(), dl.Linear(8, 2))
    return Learner(model, CrossEntropyLoss(), SGD(model.parameters(), lr=lr, momentum=0.9),
                   DataLoader(X, Y, batch_size=batch_size, seed=seed),
                   DataLoader(X, Y, batch_size=64, shuffle=False) if valid else None)


def fit(learner, epochs, **kw): return learner.fit(epochs, progress=False, log=False, plot=False, **kw)


def state(learner):
    "Everything a load may change, copied"
    return dict(weights=[p.data.copy() for p in learner.model.parameters()], epoch=learner.epoch,
                history=copy.deepcopy(learner.history.records), info=copy.deepcopy(learner.info),
                hyper=dict(learner.optimizer.hyper), opt=copy.deepcopy(learner.optimizer.state),
                rng=learner.train_dl._rng.bit_generator.state, last=learner.last_checkpoint)


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if k in ('weights',): [np.testing.assert_array_equal(x, y) for x, y in zip(a[k], b[k])]
        elif k == 'opt':
            assert a[k].keys() == b[k].keys()
            for i in a[k]: [np.testing.assert_array_equal(a[k][i][n], b[k][i][n]) for n in a[k][i]]
        else: assert a[k] == b[k], k


# ------------------------------------------------------------------------------------------- non-finite weights, truth
def test_weights_overflowing_in_the_last_step_are_never_saved(tmp_path):
    "No validation data, one step per epoch: the step of epoch 2 makes the weights infinite; epoch 1's checkpoint stays"
    l = make(valid=False, batch_size=len(X))
    fit(l, 1, checkpoint=tmp_path / 'ck.npz')
    before = (tmp_path / 'ck.npz').read_bytes()
    l.optimizer.lr = 1e300
    with np.errstate(all='ignore'), pytest.raises(TrainingDiverged) as e:
        fit(l, 1, checkpoint=tmp_path / 'ck.npz')
    assert str(e.value) == ("parameter 0.weight became NaN or infinite in epoch 2: training diverged. Try a lower learning "
                            f"rate (now 1e+300). The checkpoint of epoch 1 in {tmp_path / 'ck.npz'} is intact.")
    assert (tmp_path / 'ck.npz').read_bytes() == before and os.listdir(tmp_path) == ['ck.npz']
    assert make(seed=5).load(tmp_path / 'ck.npz').epoch == 1 and l.epoch == 1 and len(l.history) == 1


def test_save_refuses_non_finite_weights(tmp_path):
    l = make()
    l.save(tmp_path / 'ck.npz')
    before = (tmp_path / 'ck.npz').read_bytes()
    l.model[2].bias.data[1] = np.nan
    with pytest.raises(TrainingDiverged, match=f"parameter 2.bias holds NaN or inf: nothing was saved, {tmp_path / 'ck.npz'} keeps"):
        l.save(tmp_path / 'ck.npz')
    assert (tmp_path / 'ck.npz').read_bytes() == before
    with pytest.raises(TrainingDiverged, match='nothing was saved'): l.save(tmp_path / 'new.npz')
    assert os.listdir(tmp_path) == ['ck.npz']


@pytest.mark.parametrize('existing,note', [
    (False, 'No checkpoint was written to {} yet.'),
    (True, '{} was not written by this learner and was left as it was.'),
])
def test_divergence_says_what_the_checkpoint_file_holds(tmp_path, existing, note):
    path = tmp_path / 'ck.npz'
    if existing: path.write_bytes(b'an earlier file')
    l = make(lr=1e30)
    with np.errstate(all='ignore'), pytest.raises(TrainingDiverged) as e:
        fit(l, 2, checkpoint=path)
    assert str(e.value).endswith(note.format(path)) and 'in epoch 1, batch' in str(e.value)
    assert (path.read_bytes() == b'an earlier file') if existing else not path.exists()


def test_empty_loaders_are_errors_not_a_loss_of_zero():
    l = make()
    l.train_dl = []
    with pytest.raises(ValueError, match='^train_dl yielded no examples: there is nothing to train on$'): fit(l, 1)
    assert l.epoch == 0 and len(l.history) == 0
    l = make()
    l.valid_dl = iter(())
    with pytest.raises(ValueError, match='^valid_dl yielded no examples: there is nothing to evaluate$'): fit(l, 1)
    with pytest.raises(ValueError, match='^dl yielded no examples: there is nothing to evaluate$'): make().evaluate([])
    l = make()                                                  # a loader that yields an empty batch among full ones
    l.train_dl = [(X[:16], Y[:16]), (X[:0], Y[:0])]
    with pytest.raises(ValueError, match=r'^train_dl yielded an empty batch \(batch 2\): every batch needs an example$'):
        fit(l, 1)
    assert l.epoch == 0 and len(l.history) == 0


def test_no_progress_bar_when_stderr_is_not_a_terminal(capsys):
    make().fit(1, plot=False)                                 # progress=True, but pytest's stderr is no terminal
    out, err = capsys.readouterr()
    assert err == '' and out.startswith('epoch 1  train_loss') and '\r' not in out


def test_info_is_saved_and_restored(tmp_path):
    l = make()
    l.info = {'data': 'blobs', 'note': [1, 2.5, None]}
    fit(l, 1, checkpoint=tmp_path / 'ck.npz')
    assert make(seed=3).load(tmp_path / 'ck.npz').info == {'data': 'blobs', 'note': [1, 2.5, None]}
    l.info = {'not json': object()}
    with pytest.raises(TypeError, match='meta must be JSON-serialisable'): l.save(tmp_path / 'ck.npz')


# --------------------------------------------------------------------------------------------------------- write_atomic
@pytest.mark.parametrize('umask', [0o022, 0o027, 0o077])
def test_write_atomic_gives_the_mode_open_would(tmp_path, umask):
    old = os.umask(umask)
    try:
        p = write_atomic(tmp_path / 'new', lambda f: f.write(b'x'))
        with open(tmp_path / 'plain', 'wb') as f: f.write(b'x')
    finally: os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == stat.S_IMODE((tmp_path / 'plain').stat().st_mode) == 0o666 & ~umask
    os.chmod(p, 0o604)                                          # an existing file keeps its mode, as with open(..., 'wb')
    write_atomic(p, lambda f: f.write(b'y'))
    assert stat.S_IMODE(p.stat().st_mode) == 0o604 and p.read_bytes() == b'y'


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    def interrupted(f): f.write(b'half'); raise KeyboardInterrupt
    (tmp_path / 'f').write_bytes(b'old')
    with pytest.raises(KeyboardInterrupt): write_atomic(tmp_path / 'f', interrupted)
    assert os.listdir(tmp_path) == ['f'] and (tmp_path / 'f').read_bytes() == b'old'
    (tmp_path / 'd').mkdir()
    with pytest.raises(IsADirectoryError, match='it is a folder'): write_atomic(tmp_path / 'd', lambda f: None)
    with pytest.raises(TypeError, match='write must be a function'): write_atomic(tmp_path / 'g', b'bytes')
    with pytest.raises(OSError, match='could not create the folder'): write_atomic(tmp_path / 'f' / 'g', lambda f: None)
    assert sorted(os.listdir(tmp_path)) == ['d', 'f']


class Stop(Exception): pass


@pytest.mark.parametrize('signum', ['SIGINT', 'SIGTERM'])
def test_a_signal_while_the_temporary_file_is_created_leaves_none(tmp_path, monkeypatch, signum):
    """Ctrl-C or SIGTERM just after the temporary file exists, before write_atomic knows its name (its handler raises at
    the next bytecode): held until the file is named, then raised, and the file removed. The CLI's `train` hit this
    when interrupted while saving a checkpoint"""
    signum = getattr(signal, signum)
    def stop(n, frame): raise Stop(n)
    previous = signal.signal(signum, stop)
    real = tempfile.mkstemp
    def mkstemp(*a, **k):
        made = real(*a, **k)
        signal.raise_signal(signum)                   # its Python handler runs before this function returns
        return made
    monkeypatch.setattr(tempfile, 'mkstemp', mkstemp)
    try:
        (tmp_path / 'f').write_bytes(b'old')
        with pytest.raises(Stop) as e: write_atomic(tmp_path / 'f', lambda f: f.write(b'new'))
        assert e.value.args == (signum,)
        assert os.listdir(tmp_path) == ['f'] and (tmp_path / 'f').read_bytes() == b'old'
        assert signal.getsignal(signum) is stop       # the handler is back
        monkeypatch.setattr(tempfile, 'mkstemp', real)
        write_atomic(tmp_path / 'f', lambda f: f.write(b'new'))                     # and nothing is held any more
        assert os.listdir(tmp_path) == ['f'] and (tmp_path / 'f').read_bytes() == b'new'
    finally: signal.signal(signum, previous)


# ---------------------------------------------------------------------------------------------------- the header's checks
def test_format_1_files_still_load_and_their_header_is_checked(tmp_path):
    "Format 1 (checksum over the arrays only, as the shipped LeNet-5 weights): read, every header field checked"
    assert dl.zoo.lenet5(pretrained=True).pretrained['test_accuracy'] > 0.9
    l = make()
    fit(l, 1, checkpoint=tmp_path / 'ck.npz')
    with np.load(tmp_path / 'ck.npz') as f: a = {k: f[k] for k in f.files if k != 'header'}; h = json.loads(str(f['header']))
    h['format'], h['sha256'] = 'dlcourse-checkpoint-1', ckmod._digest(a)
    np.savez(tmp_path / 'v1.npz', **a, header=np.array(json.dumps(h)))
    assert make(seed=2).load(tmp_path / 'v1.npz').epoch == 1
    h['meta']['epoch'] = -1                                      # not covered by the checksum in format 1: caught by the checks
    np.savez(tmp_path / 'v1.npz', **a, header=np.array(json.dumps(h)))
    with pytest.raises(ValueError, match='its epoch must be an integer >= 0, got -1'): make().load(tmp_path / 'v1.npz')


def test_numbers_beyond_float_in_the_header_are_refused(tmp_path):
    "JSON integers have no limit: 10**400 as a learning rate, 10**30 as the epoch are refused at once, in little memory"
    import tracemalloc
    l = make()
    fit(l, 1, checkpoint=tmp_path / 'ck.npz')
    with np.load(tmp_path / 'ck.npz') as f: a = {k: f[k] for k in f.files if k != 'header'}; header = json.loads(str(f['header']))
    for keys, value, fragment in [(('optimizer', 'hyper', 'lr'), 10 ** 400, "hyper-parameters must be finite numbers"),
                                  (('meta', 'epoch'), 10 ** 30, "one record of finite numbers per epoch, for the epochs 1 to "
                                                                f"{10 ** 30}")]:
        h = copy.deepcopy(header)
        parent = h
        for k in keys[:-1]: parent = parent[k]
        parent[keys[-1]] = value
        _write(tmp_path / 'edited.npz', a, h, resign=True)
        l2 = make(seed=3)
        before = state(l2)
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match=fragment): l2.load(tmp_path / 'edited.npz')
            assert tracemalloc.get_traced_memory()[1] < 2 ** 20, "the check built something as large as the number"
        finally: tracemalloc.stop()
        assert_same(state(l2), before)


def test_a_file_that_is_no_npz_is_refused_without_pickle_advice(tmp_path):
    "numpy would say 'you can load it unsafely using allow_pickle': the checkpoint reader says what the file is not"
    (tmp_path / 'noise.npz').write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError) as e: read_checkpoint(tmp_path / 'noise.npz')
    assert 'is not a dlcourse checkpoint (an .npz file)' in str(e.value) and 'pickle' not in str(e.value)


def test_a_compressed_member_is_refused_before_it_is_expanded(tmp_path):
    "A zip bomb named .npz (256 MB of zeros in a quarter of a MB): refused from the zip directory, nothing decompressed"
    import tracemalloc
    import zipfile
    with zipfile.ZipFile(tmp_path / 'bomb.npz', 'w', zipfile.ZIP_DEFLATED) as z:
        with z.open('model/0.weight.npy', 'w', force_zip64=True) as f:
            f.write(b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (67108864,), }" + b' ' * 47 + b'\n')
            zeros = bytes(1 << 24)
            for _ in range(16): f.write(zeros)
    assert (tmp_path / 'bomb.npz').stat().st_size < 2 ** 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="member 'model/0.weight.npy' is compressed"): read_checkpoint(tmp_path / 'bomb.npz')
        assert tracemalloc.get_traced_memory()[1] < 2 ** 22
    finally: tracemalloc.stop()


def _paths(node, prefix=()):
    "Every place in a JSON tree, as a tuple of keys and indices"
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items: yield from _paths(v, prefix + (k,))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=4)


def _near(v):
    "Values a careless edit would put in place of `v`"
    if isinstance(v, bool): return [not v, 0, 1, 'true', None]
    if isinstance(v, (int, float)): return [-v, -1, 0, v + 1, v * (10 ** 300 if isinstance(v, int) else 1e300), 10 ** 30, 10 ** 400,
                                            float('nan'), float('inf'), str(v), True, None]
    if isinstance(v, str): return ['', v + 'x', v.upper(), 0, None]
    if isinstance(v, list): return [[], v[:-1], v + v[-1:], v[::-1], {}]
    return [{}, None, []]


@st.composite
def edits(draw, header):
    "1 to 3 edits of the header: replace a value (with a nearby or a random one), delete a key or an item, add a key"
    h = copy.deepcopy(header)
    for _ in range(draw(st.integers(1, 3))):
        places = [p for p in _paths(h) if p]
        path = draw(st.sampled_from(places))
        parent = h
        for k in path[:-1]: parent = parent[k]
        op = draw(st.sampled_from(['near', 'random', 'delete', 'add']))
        if op == 'near': parent[path[-1]] = draw(st.sampled_from(_near(parent[path[-1]])))
        elif op == 'random': parent[path[-1]] = draw(JSON)
        elif op == 'delete': del parent[path[-1]]
        elif isinstance(parent, dict): parent[draw(st.text(min_size=1, max_size=6))] = draw(JSON)
        event(f"edit: {op} {'.'.join(str(k) for k in path[:2])}")
    return h


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    "A checkpoint of a CLI-like run (with info) after 2 epochs: its arrays and header"
    path = tmp_path_factory.mktemp('ck') / 'ck.npz'
    l = make(seed=1)
    l.info = {'data': 'xor', 'model': 'mlp', 'activation': 'relu', 'seed': 0, 'epochs': 4, 'batch_size': 16}
    fit(l, 2, checkpoint=path)
    with np.load(path) as f: return {k: f[k] for k in f.files if k != 'header'}, json.loads(str(f['header']))


def _write(path, arrays, h, resign):
    if resign and isinstance(h, dict):
        h['sha256'] = ckmod._digest(arrays, {k: v for k, v in h.items() if k != 'sha256'} if h.get('format') == ckmod._FORMAT else None)
    np.savez(path, **arrays, header=np.array(json.dumps(h)))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), resign=st.booleans())
def test_fuzz_checkpoint_header(saved, tmp_path_factory, data, resign):
    """Random edits of the header, with the checksum recomputed (a careful editor, a bug) or not (a careless one): the
    learner loads valid values, or refuses with one ValueError and stays exactly as it was"""
    arrays, header = saved
    h = data.draw(edits(header))
    unchanged = json.dumps(h, sort_keys=True) == json.dumps(header, sort_keys=True)     # strict: 0 is not False here
    path = tmp_path_factory.mktemp('fuzz') / 'ck.npz'
    _write(path, arrays, copy.deepcopy(h), resign)
    l = make(seed=9)
    before = state(l)
    try: l.load(path)
    except ValueError as e:
        event('refused')
        assert str(e).startswith(str(path)) and '\n' not in str(e), e
        assert_same(state(l), before)
        if unchanged and resign: raise AssertionError(f"an unchanged header was refused: {e}")
    else:
        event('loaded')
        assert h['meta']['epoch'] == l.epoch >= 0 and type(l.epoch) is int
        assert l.history.records == h['meta']['history'] and [r['epoch'] for r in l.history] == list(range(1, l.epoch + 1))
        assert l.optimizer.hyper == h['optimizer']['hyper'] == dict(SGD(l.model.parameters(), **l.optimizer.hyper).hyper)
        assert json.dumps(l.info, sort_keys=True) == json.dumps(h['meta'].get('info', {}), sort_keys=True)   # info: any JSON
        for name, p in l.model.named_parameters(): np.testing.assert_array_equal(p.data, arrays[f'model/{name}'])
        if not resign and h.get('format') == ckmod._FORMAT: assert unchanged, "an edited header passed the checksum"
    try: settings_ = _resumed(path, dict.fromkeys(['data', 'model', 'activation', 'seed', 'epochs', 'batch_size']))[0]
    except ValueError as e: assert '\n' not in str(e)
    else: assert settings_ == h['meta']['info']
