"""dlcourse.data: the IDX reader, the search for Fashion-MNIST and MNIST (root, cache, Debian, download from a local HTTP
server on 127.0.0.1), the shipped sample, normalisation and preprocess, and the DataLoader.

Needs Debian's `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist): under the test command
(DLCOURSE_REQUIRE_ALL=1) its absence is a failure, by hand a skip. No test uses the internet or the user's cache.
"""
import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import REQUIRE_ALL
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from dlcourse import data
from dlcourse.core import manual_seed
from dlcourse.data import (DATASETS, FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, IDX_DTYPES, IDX_FILES,
                           SAMPLE_FILES, DataLoader, cache_dir, denormalize, fashion_mnist, fashion_mnist_sample,
                           image_stats, load_dataset, mnist, normalize, preprocess, read_idx, write_idx)

DEBIAN = Path('/usr/share/datasets/fashion-mnist')
FILES = [n for split in IDX_FILES.values() for n in split]


@pytest.fixture(scope='session')
def debian():
    "The folder of Debian's Fashion-MNIST files: required under the test command"
    if not all((DEBIAN/f'{n}.gz').is_file() for n in FILES):
        message = (f"Fashion-MNIST is not installed in {DEBIAN}: run `apt-get update && apt-get install -y "
                   "dataset-fashion-mnist` (tools/test needs it)")
        if REQUIRE_ALL: pytest.fail(message)
        pytest.skip(message)
    return DEBIAN


@pytest.fixture(scope='session')
def full(debian):
    "The official files read directly: {'train': (images, labels), 'test': (...)}"
    return {split: tuple(read_idx(debian/f'{n}.gz') for n in names) for split, names in IDX_FILES.items()}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    "Every test gets an empty cache of its own and the official download addresses"
    monkeypatch.setenv('DLCOURSE_DATA', str(tmp_path/'cache'))
    for src in DATASETS.values(): monkeypatch.delenv(src.url_env, raising=False)
    return tmp_path/'cache'


def without_system_dirs(monkeypatch, name='fashion-mnist', **changes):
    "Make load_dataset skip the Debian folder (and change other fields of the source)"
    monkeypatch.setitem(DATASETS, name, DATASETS[name]._replace(system_dirs=(), **changes))


def md5(b): return hashlib.md5(b).hexdigest()


def files_in(folder):
    return sorted(p.name for p in folder.rglob('*') if p.is_file()) if folder.exists() else []


class Server:
    "A static HTTP server on 127.0.0.1 serving `folder`, recording the paths requested"
    def __init__(self, folder):
        requests = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args): pass
            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.02), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown(); self.httpd.server_close(); self.thread.join()


@pytest.fixture
def serve():
    "serve(folder) -> a running Server; all are shut down after the test"
    servers = []
    def start(folder):
        servers.append(Server(folder))
        return servers[-1]
    yield start
    for s in servers: s.close()


def fake_split(folder, n=20, seed=0, gz=True, names=IDX_FILES['test']):
    "Write a small valid IDX split (random images, labels 0..9) into `folder`; return (images, labels)"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, labels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)
    for name, a in zip(names, (images, labels)): write_idx(folder/(name + ('.gz' if gz else '')), a)
    return images, labels


def copy_debian(debian, folder, split='test'):
    folder.mkdir(parents=True, exist_ok=True)
    for n in IDX_FILES[split]: (folder/f'{n}.gz').write_bytes((debian/f'{n}.gz').read_bytes())
    return folder


# ---------------------------------------------------------------------------------------------------------------- IDX

def test_read_idx_on_the_debian_files(debian, full):
    images, labels = full['train']
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8 and images.flags.writeable
    assert labels.shape == (60000,) and labels.dtype == np.uint8 and set(np.unique(labels)) == set(range(10))
    test_images, test_labels = full['test']
    assert test_images.shape == (10000, 28, 28) and test_labels.shape == (10000,)
    # the Debian files are recompressed copies (other .gz checksums) of the official content
    for split, names in IDX_FILES.items():
        for n, a in zip(names, full[split]):
            content = bytes([0, 0, 8, a.ndim]) + b''.join(d.to_bytes(4, 'big') for d in a.shape) + a.tobytes()
            assert md5(content) == DATASETS['fashion-mnist'].checksums[n][1], n
            assert len(content) == DATASETS['fashion-mnist'].checksums[n][2], n


def test_read_idx_plain_and_gz_agree(debian, full, tmp_path):
    plain = tmp_path/'t10k-labels-idx1-ubyte'
    plain.write_bytes(gzip.decompress((debian/'t10k-labels-idx1-ubyte.gz').read_bytes()))
    np.testing.assert_array_equal(read_idx(plain), full['test'][1])
    # gzip is recognised by content, not name
    renamed = tmp_path/'labels.bin'
    renamed.write_bytes((debian/'t10k-labels-idx1-ubyte.gz').read_bytes())
    np.testing.assert_array_equal(read_idx(renamed), full['test'][1])
    np.testing.assert_array_equal(read_idx(str(plain)), full['test'][1])


@pytest.mark.parametrize('code', sorted(IDX_DTYPES))
@pytest.mark.parametrize('suffix', ['', '.gz'])
def test_write_read_round_trip(tmp_path, code, suffix):
    dtype = IDX_DTYPES[code].newbyteorder('=')
    for shape in [(1,), (5,), (2, 3), (2, 0, 3), (2, 1, 3, 2)]:
        a = (np.arange(int(np.prod(shape))) * 37 % 251 - 100).astype(dtype).reshape(shape)
        path = write_idx(tmp_path/f'a{suffix}', a)
        raw = gzip.decompress(path.read_bytes()) if suffix else path.read_bytes()
        assert raw[:4] == bytes([0, 0, code, len(shape)])
        b = read_idx(path)
        assert b.dtype == dtype and b.shape == shape and b.flags.writeable
        np.testing.assert_array_equal(b, a)


def test_write_idx_is_reproducible(tmp_path):
    a = np.arange(100, dtype=np.uint8)
    assert write_idx(tmp_path/'a.gz', a).read_bytes() == write_idx(tmp_path/'b.gz', a).read_bytes()


LABELS = bytes([0, 0, 8, 1]) + (10).to_bytes(4, 'big') + bytes(range(10))     # a valid IDX file: 10 uint8 labels
IMAGES = bytes([0, 0, 8, 3]) + b''.join(n.to_bytes(4, 'big') for n in (2, 3, 4)) + bytes(24)

CORRUPT = [
    ('empty', b'', 'truncated: 0 byte(s)'),
    ('short', b'\0\0\x08', 'truncated: 3 byte(s)'),
    ('bad magic', b'\x01' + LABELS[1:], 'bad magic number 0x01000801'),
    ('bad magic 2', b'\0\x01' + LABELS[2:], 'bad magic number 0x00010801'),
    ('text file', b'hello world\n', 'bad magic number 0x68656C6C'),
    ('unknown type code', LABELS[:2] + b'\x0a' + LABELS[3:], 'unsupported type code 0x0A; IDX type codes are 0x08 (uint8)'),
    ('type code 0xff', LABELS[:2] + b'\xff' + LABELS[3:], 'unsupported type code 0xFF'),
    ('no dimensions', LABELS[:3] + b'\0', 'the header declares 0 dimensions'),
    ('truncated header', IMAGES[:10], 'truncated header: 3 dimensions need 16 bytes, the file has 10'),
    ('truncated data', LABELS[:-1], 'need 10 bytes of data, the file has 9 (truncated)'),
    ('truncated images', IMAGES[:-5], 'dimensions (2, 3, 4) of uint8 need 24 bytes of data, the file has 19 (truncated)'),
    ('extra data', LABELS + b'\0\0\0', 'the file has 13 (3 bytes too many)'),
    ('wrong itemsize', LABELS[:2] + b'\x0c' + LABELS[3:], 'of int32 need 40 bytes of data, the file has 10'),
    ('huge dims', bytes([0, 0, 8, 2]) + (2**32 - 1).to_bytes(4, 'big') * 2, 'need 18,446,744,065,119,617,025 bytes'),
]


@pytest.mark.parametrize('name, content, message', CORRUPT, ids=[c[0] for c in CORRUPT])
@pytest.mark.parametrize('suffix', ['', '.gz'])
def test_read_idx_rejects_corrupt_files(tmp_path, name, content, message, suffix):
    path = tmp_path/f'broken{suffix}'
    path.write_bytes(gzip.compress(content) if suffix else content)
    with pytest.raises(ValueError) as e: read_idx(path)
    assert str(e.value).startswith(f'{path}: ') and message in str(e.value)


def test_read_idx_rejects_broken_gzip(tmp_path):
    gz = gzip.compress(IMAGES)
    path = tmp_path/'cut.gz'
    path.write_bytes(gz[:len(gz) // 2])
    with pytest.raises(ValueError, match='cut.gz: truncated gzip file'): read_idx(path)
    bad = bytearray(gz); bad[-8] ^= 0xFF                     # the CRC of the content
    path.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match='corrupt gzip file'): read_idx(path)
    path.write_bytes(b'\x1f\x8b' + b'\0' * 30)
    with pytest.raises(ValueError, match='corrupt gzip file'): read_idx(path)


def test_read_idx_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such file: .*nothing.idx'): read_idx(tmp_path/'nothing.idx')
    with pytest.raises(TypeError, match='path must be a str or os.PathLike, got int'): read_idx(3)
    with pytest.raises(TypeError, match='array must be a numpy.ndarray'): write_idx(tmp_path/'a', [1, 2])
    with pytest.raises(TypeError, match='array has dtype int64; IDX stores'): write_idx(tmp_path/'a', np.arange(3))
    with pytest.raises(ValueError, match='1 to 255 dimensions'): write_idx(tmp_path/'a', np.array(3, np.uint8))


# ------------------------------------------------------------------------------------------------------ the search

def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    assert cache_dir() == tmp_path/'cache'
    monkeypatch.delenv('DLCOURSE_DATA')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'xdg'))
    assert cache_dir() == tmp_path/'xdg'/'dlcourse'
    monkeypatch.delenv('XDG_CACHE_HOME')
    monkeypatch.setenv('HOME', str(tmp_path/'home'))
    assert cache_dir() == tmp_path/'home'/'.cache'/'dlcourse'


def test_debian_is_found_when_the_cache_is_empty(debian, full):
    split = load_dataset('fashion-mnist', 'test')
    assert split.source == debian
    assert split.images.dtype == np.uint8 and split.labels.dtype == np.int64
    np.testing.assert_array_equal(split.images, full['test'][0])
    np.testing.assert_array_equal(split.labels, full['test'][1])
    images, labels = fashion_mnist('train', download=False)
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [6000] * 10


def test_root_comes_first_and_is_not_checksummed(debian, tmp_path):
    images, labels = fake_split(tmp_path/'root')                 # not the official data: still accepted from root
    split = load_dataset('fashion-mnist', 'test', root=tmp_path/'root')
    assert split.source == tmp_path/'root'
    np.testing.assert_array_equal(split.images, images)
    np.testing.assert_array_equal(split.labels, labels)
    fake_split(tmp_path/'plain', gz=False)                       # uncompressed files are found too
    assert load_dataset('fashion-mnist', 'test', root=str(tmp_path/'plain')).source == tmp_path/'plain'


def test_a_broken_root_is_an_error(debian, tmp_path):
    "(a missing root is one too: tests/test_data_reliability.py)"
    root = tmp_path/'root'
    fake_split(root)
    (root/'t10k-images-idx3-ubyte.gz').write_bytes(gzip.compress(IMAGES[:-1]))
    with pytest.raises(ValueError, match='t10k-images-idx3-ubyte.gz: wrong size'):
        load_dataset('fashion-mnist', 'test', root=root)
    images, _ = fake_split(root, n=5)
    write_idx(root/'t10k-labels-idx1-ubyte.gz', np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match='5 images but 4 labels'): load_dataset('fashion-mnist', 'test', root=root)
    write_idx(root/'t10k-labels-idx1-ubyte.gz', np.full(5, 10, np.uint8))
    with pytest.raises(ValueError, match='labels must be 0 to 9, found 10'): load_dataset('fashion-mnist', 'test', root=root)
    write_idx(root/'t10k-labels-idx1-ubyte.gz', np.zeros((5, 1), np.uint8))
    with pytest.raises(ValueError, match=r'uint8 labels \(N,\), got uint8 \(5, 28, 28\) and uint8 \(5, 1\)'):
        load_dataset('fashion-mnist', 'test', root=root)


def test_cache_comes_before_debian(debian, full, isolated):
    copy_debian(debian, isolated/'fashion-mnist')
    split = load_dataset('fashion-mnist', 'test')
    assert split.source == isolated/'fashion-mnist'
    np.testing.assert_array_equal(split.images, full['test'][0])


def test_a_wrong_file_in_the_cache_is_skipped(debian, isolated):
    fake_split(isolated/'fashion-mnist')                         # valid IDX, but not the official content
    split = load_dataset('fashion-mnist', 'test', download=False)
    assert split.source == debian


def test_nothing_found_lists_every_place(debian, isolated, monkeypatch):
    without_system_dirs(monkeypatch)
    fake_split(isolated/'fashion-mnist')
    with pytest.raises(FileNotFoundError) as e: fashion_mnist('test', download=False)
    message = str(e.value)
    assert message.startswith('Fashion-MNIST (test) not found. Looked in:')
    assert '  - root' not in message                              # no root given: not a place looked in
    assert f"cache {isolated/'fashion-mnist'}: {isolated/'fashion-mnist'}/t10k-images-idx3-ubyte.gz: checksum mismatch" in message
    assert 'download: not tried (download=False)' in message
    assert 'apt-get install dataset-fashion-mnist' in message and 'fashion_mnist_sample()' in message
    (isolated/'fashion-mnist'/'t10k-labels-idx1-ubyte.gz').unlink()
    with pytest.raises(FileNotFoundError, match=r'no t10k-labels-idx1-ubyte\(.gz\)'): fashion_mnist('test', download=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'test'\], got 'valid'"): fashion_mnist('valid')
    with pytest.raises(ValueError, match=r"name must be one of \['fashion-mnist', 'mnist'\], got 'cifar'"): load_dataset('cifar')
    with pytest.raises(TypeError, match='root must be a str or os.PathLike, got int'): fashion_mnist('test', root=1)
    with pytest.raises(TypeError, match='base_url must be a str'): fashion_mnist('test', base_url=1)
    with pytest.raises(ValueError, match="split must be"): fashion_mnist_sample('all')


# ---------------------------------------------------------------------------------------------------- downloading

def test_download_from_a_local_server(debian, full, isolated, monkeypatch, serve):
    without_system_dirs(monkeypatch)
    server = serve(debian)
    split = load_dataset('fashion-mnist', 'test', base_url=server.url)
    assert split.source == isolated/'fashion-mnist'
    assert sorted(server.requests) == ['/t10k-images-idx3-ubyte.gz', '/t10k-labels-idx1-ubyte.gz']
    assert files_in(isolated) == ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']   # no temporary files left
    np.testing.assert_array_equal(split.images, full['test'][0])
    np.testing.assert_array_equal(split.labels, full['test'][1])
    assert load_dataset('fashion-mnist', 'test', base_url=server.url).source == isolated/'fashion-mnist'
    assert len(server.requests) == 2                             # the second call reads the cache


def test_download_address_from_the_environment(debian, isolated, monkeypatch, serve):
    without_system_dirs(monkeypatch)
    server = serve(debian)
    monkeypatch.setenv('DLCOURSE_FASHION_MNIST_URL', server.url.rstrip('/'))
    images, labels = fashion_mnist('test')
    assert images.shape == (10000, 28, 28) and len(server.requests) == 2


def test_download_only_what_is_missing(debian, isolated, monkeypatch, serve):
    without_system_dirs(monkeypatch)
    copy_debian(debian, isolated/'fashion-mnist')
    (isolated/'fashion-mnist'/'t10k-labels-idx1-ubyte.gz').write_bytes(b'garbage')   # broken: downloaded again
    server = serve(debian)
    assert load_dataset('fashion-mnist', 'test', base_url=server.url).source == isolated/'fashion-mnist'
    assert server.requests == ['/t10k-labels-idx1-ubyte.gz']


def corrupted_copies(debian, folder):
    "Copies of the test files that are each wrong in a different way"
    folder.mkdir()
    images = gzip.decompress((debian/'t10k-images-idx3-ubyte.gz').read_bytes())
    changed = bytearray(images); changed[1000] ^= 1              # one pixel changed, still a valid IDX file
    (folder/'t10k-images-idx3-ubyte.gz').write_bytes(gzip.compress(bytes(changed), compresslevel=1))
    (folder/'t10k-labels-idx1-ubyte.gz').write_bytes((debian/'t10k-labels-idx1-ubyte.gz').read_bytes()[:3000])  # cut
    return folder


def test_corrupted_download_is_rejected_and_nothing_is_kept(debian, tmp_path, isolated, monkeypatch, serve):
    without_system_dirs(monkeypatch)
    server = serve(corrupted_copies(debian, tmp_path/'bad'))
    with pytest.raises(FileNotFoundError) as e: fashion_mnist('test', base_url=server.url)
    message = str(e.value)
    assert f'download from {server.url}: checksum mismatch for {server.url}t10k-images-idx3-ubyte.gz' in message
    assert 'the file was not kept' in message
    assert files_in(isolated) == []                              # not even a temporary file
    # the truncated labels file: its gzip stream ends early
    bad_images = tmp_path/'bad'/'t10k-images-idx3-ubyte.gz'
    bad_images.write_bytes((debian/'t10k-images-idx3-ubyte.gz').read_bytes())
    with pytest.raises(FileNotFoundError, match='t10k-labels-idx1-ubyte.gz.*truncated gzip file'):
        fashion_mnist('test', base_url=server.url)
    assert files_in(isolated) == ['t10k-images-idx3-ubyte.gz']   # the good file stays, the bad one does not


def test_download_errors_are_reported(isolated, monkeypatch, serve, tmp_path):
    without_system_dirs(monkeypatch)
    server = serve(tmp_path)                                     # serves nothing useful: 404
    with pytest.raises(FileNotFoundError, match='HTTP Error 404'): fashion_mnist('test', base_url=server.url)
    port = server.httpd.server_address[1]
    server.close()
    with pytest.raises(FileNotFoundError, match=f'download from http://127.0.0.1:{port}/: .*(refused|urlopen error)'):
        fashion_mnist('test', base_url=f'http://127.0.0.1:{port}/')
    assert files_in(isolated) == []


def test_mirrors_are_tried_in_order(debian, isolated, monkeypatch, serve, tmp_path):
    empty, good = serve(tmp_path), serve(debian)
    without_system_dirs(monkeypatch, urls=(empty.url, good.url))
    split = load_dataset('fashion-mnist', 'test')
    assert split.source == isolated/'fashion-mnist'
    assert empty.requests == ['/t10k-images-idx3-ubyte.gz'] and len(good.requests) == 2


def test_an_oversized_download_is_cut_off(isolated, monkeypatch, serve, tmp_path):
    checksums = dict(DATASETS['fashion-mnist'].checksums)
    checksums['t10k-images-idx3-ubyte'] = ('0' * 32, '0' * 32, 10)            # expect a tiny file
    without_system_dirs(monkeypatch, checksums=checksums)
    (tmp_path/'srv').mkdir()
    (tmp_path/'srv'/'t10k-images-idx3-ubyte.gz').write_bytes(bytes(3 << 20))
    server = serve(tmp_path/'srv')
    with pytest.raises(FileNotFoundError, match='sent over .* bytes: that is not the expected file'):
        fashion_mnist('test', base_url=server.url)
    assert files_in(isolated) == []


# ------------------------------------------------------------------------------------------------ MNIST, with fakes

def test_mnist_from_root(tmp_path):
    images, labels = fake_split(tmp_path/'mnist', names=IDX_FILES['train'])
    got_images, got_labels = mnist('train', root=tmp_path/'mnist')
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_labels.dtype == np.int64


def test_mnist_search_and_fake_download_rejected(tmp_path, isolated, serve):
    fake_split(tmp_path/'srv')
    server = serve(tmp_path/'srv')
    with pytest.raises(FileNotFoundError) as e: mnist('test', base_url=server.url)
    message = str(e.value)
    assert message.startswith('MNIST (test) not found') and 'checksum mismatch' in message
    assert f"cache {isolated/'mnist'}: no such folder" in message and 'yann.lecun.com' in message
    assert files_in(isolated) == []
    fake_split(isolated/'mnist')                                 # fakes in the cache are refused too
    with pytest.raises(FileNotFoundError, match='t10k-images-idx3-ubyte.gz: checksum mismatch'): mnist('test', download=False)
    assert DATASETS['mnist'].urls[0] == 'http://yann.lecun.com/exdb/mnist/'


def test_a_download_passes_by_the_archive_or_the_content_checksum(tmp_path, serve):
    "Accepted: the .gz has the official MD5 (official files), or its content has (a recompressed copy, like Debian's)"
    images, _ = fake_split(tmp_path/'srv')
    archive = (tmp_path/'srv'/'t10k-images-idx3-ubyte.gz').read_bytes()
    content = gzip.decompress(archive)
    url = serve(tmp_path/'srv').url + 't10k-images-idx3-ubyte.gz'
    dest = tmp_path/'got'/'images.gz'
    for checksum in ((md5(archive), '0' * 32, len(content)), ('0' * 32, md5(content), len(content))):
        assert data._download(url, dest, checksum) == dest and dest.read_bytes() == archive
        dest.unlink()
    with pytest.raises(ValueError, match=f'checksum mismatch for {url}: MD5 {md5(archive)} .content {md5(content)}.'):
        data._download(url, dest, ('0' * 32, '1' * 32, len(content)))
    assert files_in(tmp_path/'got') == []


def test_mnist_download_with_fake_checksums(tmp_path, isolated, monkeypatch, serve):
    "The whole MNIST download path, with fake files and checksums made to match them"
    images, labels = fake_split(tmp_path/'srv')
    checksums = {}
    for n in IDX_FILES['test']:
        archive = (tmp_path/'srv'/f'{n}.gz').read_bytes()
        checksums[n] = (md5(archive), md5(gzip.decompress(archive)), len(gzip.decompress(archive)))
    monkeypatch.setitem(DATASETS, 'mnist', DATASETS['mnist']._replace(checksums=checksums))
    server = serve(tmp_path/'srv')
    got_images, got_labels = mnist('test', base_url=server.url)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert files_in(isolated) == ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']
    assert load_dataset('mnist', 'test', download=False).source == isolated/'mnist'


# ------------------------------------------------------------------------------------------------------ the sample

def test_sample_shapes_and_balance():
    for split, n in (('train', 1000), ('test', 200)):
        images, labels = fashion_mnist_sample(split)
        assert images.shape == (10 * n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (10 * n,) and labels.dtype == np.int64
        assert np.bincount(labels).tolist() == [n] * 10


def test_sample_is_the_first_images_of_each_class(full):
    for split, n in (('train', 1000), ('test', 200)):
        images, labels = full[split]
        idx = np.sort(np.concatenate([np.flatnonzero(labels == k)[:n] for k in range(10)]))
        sample_images, sample_labels = fashion_mnist_sample(split)
        np.testing.assert_array_equal(sample_images, images[idx])
        np.testing.assert_array_equal(sample_labels, labels[idx])


def test_sample_checksums():
    folder = Path(data.__file__).parent/'data'
    for name, sha in data._SAMPLE_SHA256.items():
        assert hashlib.sha256(gzip.decompress((folder/name).read_bytes())).hexdigest() == sha, name
    assert sorted(data._SAMPLE_SHA256) == sorted(n for names in SAMPLE_FILES.values() for n in names)


def test_sample_with_a_wrong_checksum_is_refused(monkeypatch):
    monkeypatch.setitem(data._SAMPLE_SHA256, SAMPLE_FILES['test'][1], '0' * 64)
    with pytest.raises(ValueError, match='fashion-mnist-sample-test-labels-idx1-ubyte.gz: checksum mismatch'):
        fashion_mnist_sample('test')


def test_sample_package_files():
    folder = Path(data.__file__).parent/'data'
    shipped = {p.name for p in folder.iterdir()}           # other package data (pretrained weights) may sit beside it
    assert {*data._SAMPLE_SHA256, 'LICENSE-fashion-mnist.txt', 'README.md'} <= shipped
    assert sum((folder/n).stat().st_size for n in data._SAMPLE_SHA256) < 6_000_000
    licence = (folder/'LICENSE-fashion-mnist.txt').read_text(encoding='utf-8')
    assert 'Copyright © 2017 Zalando SE' in licence and 'Permission is hereby granted' in licence
    assert 'tools/make_sample.py' in (folder/'README.md').read_text(encoding='utf-8')


# --------------------------------------------------------------------------------------- normalisation, preprocess

def test_constants_are_the_training_set_statistics(full):
    images = full['train'][0]
    mean, std = image_stats(images)
    assert mean == pytest.approx(FASHION_MNIST_MEAN, rel=1e-15) and std == pytest.approx(FASHION_MNIST_STD, rel=1e-15)
    sample = images[:3000].astype(np.float64) / 255                            # float64 check on part of the data
    assert image_stats(images[:3000]) == pytest.approx((sample.mean(), sample.std()), rel=1e-12)


@given(st.lists(st.integers(0, 255), min_size=1, max_size=300))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_image_stats_matches_float64(values):
    a = np.array(values, np.uint8)
    mean, std = image_stats(a)
    assert mean == pytest.approx((a / 255).mean(), rel=1e-12, abs=1e-15)
    assert std == pytest.approx((a / 255).std(), rel=1e-9, abs=1e-12)


def test_preprocess(full):
    images = full['test'][0][:2000]
    x = preprocess(images)
    assert x.shape == (2000, 1, 28, 28) and x.dtype == np.float32 and x.flags.c_contiguous
    expected = (images[:, None].astype(np.float64) / 255 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    np.testing.assert_allclose(x, expected, rtol=0, atol=2e-6)
    train = preprocess(full['train'][0][::6])                                  # 10,000 training images
    assert abs(train.mean(dtype=np.float64)) < 0.01 and abs(train.std(dtype=np.float64) - 1) < 0.01
    assert preprocess(images[:0]).shape == (0, 1, 28, 28)


PREPROCESS_BAD = [
    (lambda: preprocess([[0] * 28] * 28), TypeError, 'images must be a numpy.ndarray, got list'),
    (lambda: preprocess(np.zeros((2, 28, 28))), TypeError, 'dtype uint8 (raw pixels 0 to 255), got float64; preprocess scales'),
    (lambda: preprocess(np.zeros((2, 28, 28), np.int64)), TypeError, 'got int64'),
    (lambda: preprocess(np.zeros((28, 28), np.uint8)), ValueError, 'got (28, 28); use images[None] for a single image'),
    (lambda: preprocess(np.zeros((2, 1, 28, 28), np.uint8)), ValueError, 'without the channel axis'),
    (lambda: preprocess(np.zeros((2, 32, 32), np.uint8)), ValueError, 'images must have shape (N, 28, 28) (3-D), got (2, 32, 32)'),
]


@pytest.mark.parametrize('call, exc, message', PREPROCESS_BAD)
def test_preprocess_rejects_bad_input(call, exc, message):
    with pytest.raises(exc) as e: call()
    assert message in str(e.value)


def test_normalize_and_denormalize():
    for dtype in (np.float32, np.float64):
        x = np.linspace(0, 1, 12, dtype=dtype).reshape(3, 4)
        y = normalize(x)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, (x - FASHION_MNIST_MEAN) / FASHION_MNIST_STD, rtol=1e-6)
        np.testing.assert_allclose(denormalize(y), x, atol=1e-6)
        np.testing.assert_allclose(normalize(x, 0.5, 2.0), (x - 0.5) / 2, rtol=1e-6)
    with pytest.raises(TypeError, match='x must have dtype float32 or float64'): normalize(np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match='std must be a positive number'): normalize(np.zeros(3), std=0)
    with pytest.raises(ValueError, match='mean must be a finite number'): denormalize(np.zeros(3), mean=float('nan'))


def test_classes():
    assert FASHION_MNIST_CLASSES == ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
                                     'Sneaker', 'Bag', 'Ankle boot')


# ------------------------------------------------------------------------------------------------------ DataLoader

def epoch(loader):
    "The example indices of one epoch, batch by batch, checking that x and y stay paired"
    batches = []
    for xb, yb in loader:
        np.testing.assert_array_equal(yb, -xb)
        batches.append(xb)
    return batches


@given(n=st.integers(1, 200), batch_size=st.integers(1, 64), shuffle=st.booleans(), drop_last=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_example_once_per_epoch(n, batch_size, shuffle, drop_last, seed):
    assume(not (drop_last and batch_size > n))
    x = np.arange(n)
    dl = DataLoader(x, -x, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    full_batches, rest = divmod(n, batch_size)
    assert len(dl) == full_batches + (0 if drop_last or rest == 0 else 1)
    for _ in range(2):
        batches = epoch(dl)
        assert len(batches) == len(dl)
        sizes = [len(b) for b in batches]
        assert sizes == [batch_size] * full_batches + ([] if drop_last or rest == 0 else [rest])
        seen = np.concatenate(batches)
        assert len(np.unique(seen)) == len(seen)                 # nothing twice
        if not drop_last: assert sorted(seen) == list(range(n))   # everything once
        if not shuffle: assert seen.tolist() == list(range(len(seen)))


def test_reproducible_with_a_seed_and_fresh_each_epoch():
    x = np.arange(100)
    a, b = DataLoader(x, -x, 10, seed=42), DataLoader(x, -x, 10, seed=42)
    epochs_a = [np.concatenate(epoch(a)) for _ in range(3)]
    epochs_b = [np.concatenate(epoch(b)) for _ in range(3)]
    for ea, eb in zip(epochs_a, epochs_b): np.testing.assert_array_equal(ea, eb)
    assert not np.array_equal(epochs_a[0], epochs_a[1]) and not np.array_equal(epochs_a[1], epochs_a[2])
    assert not np.array_equal(np.concatenate(epoch(DataLoader(x, -x, 10, seed=43))), epochs_a[0])
    g1, g2 = np.random.default_rng(7), np.random.default_rng(7)                # a Generator works too
    np.testing.assert_array_equal(np.concatenate(epoch(DataLoader(x, -x, 10, seed=g1))),
                                  np.concatenate(epoch(DataLoader(x, -x, 10, seed=g2))))


def test_seed_none_uses_the_package_generator():
    x = np.arange(50)
    manual_seed(3); first = [np.concatenate(epoch(DataLoader(x, -x, 8))) for _ in range(2)]
    manual_seed(3); again = [np.concatenate(epoch(DataLoader(x, -x, 8))) for _ in range(2)]
    for f, g in zip(first, again): np.testing.assert_array_equal(f, g)


def test_last_partial_batch_and_drop_last():
    x = np.arange(10)
    assert [len(b) for b in epoch(DataLoader(x, -x, 3, shuffle=False))] == [3, 3, 3, 1]
    assert [len(b) for b in epoch(DataLoader(x, -x, 3, shuffle=False, drop_last=True))] == [3, 3, 3]
    assert [len(b) for b in epoch(DataLoader(x, -x, 10))] == [10]
    assert [len(b) for b in epoch(DataLoader(x, -x, 11))] == [10]
    assert len(DataLoader(x, -x, 5, drop_last=True)) == 2


def test_dataloader_with_images():
    images, labels = fashion_mnist_sample('test')
    dl = DataLoader(images, labels, 128, seed=0)
    xb, yb = next(iter(dl))
    assert xb.shape == (128, 28, 28) and xb.dtype == np.uint8 and yb.shape == (128,) and yb.dtype == np.int64
    order = np.random.default_rng(0).permutation(len(images))[:128]        # the first batch of a seeded loader
    np.testing.assert_array_equal(xb, images[order]); np.testing.assert_array_equal(yb, labels[order])
    assert repr(dl) == 'DataLoader(2000 examples, batch_size=128, 16 batches, shuffle=True, drop_last=False)'


class Pairs:
    "A dataset as PyTorch users write one: len() and indexing, items (x, y)"
    def __init__(self, x, y): self.x, self.y = x, y
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return self.x[i], self.y[i]


@given(n=st.integers(1, 60), batch_size=st.integers(1, 16), shuffle=st.booleans(), drop_last=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_a_dataset_gives_the_batches_of_its_arrays(n, batch_size, shuffle, drop_last, seed):
    "A dataset of (x, y) pairs: the same batches, in the same order, as the arrays it holds, with the same seed"
    assume(not (drop_last and batch_size > n))
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 1, 2)
    y = np.arange(n, dtype=np.int64)
    kw = dict(batch_size=batch_size, shuffle=shuffle, drop_last=drop_last)
    arrays, dataset = DataLoader(x, y, seed=seed, **kw), DataLoader(Pairs(x, y), seed=seed, **kw)
    assert len(dataset) == len(arrays) and repr(dataset) == repr(arrays)
    for (xa, ya), (xd, yd) in zip(arrays, dataset, strict=True):
        assert xd.dtype == xa.dtype and yd.dtype == ya.dtype
        np.testing.assert_array_equal(xd, xa); np.testing.assert_array_equal(yd, ya)


def test_dataset_items_are_collated_as_pytorch_does():
    "Python numbers become int64 / float64 arrays, arrays are stacked; items that are not tuples give one array per batch"
    xb, yb = next(iter(DataLoader([(0.5, 1), (1.5, 0), (2.5, 1)], batch_size=3, shuffle=False)))
    assert xb.dtype == np.float64 and yb.dtype == np.int64 and xb.tolist() == [0.5, 1.5, 2.5] and yb.tolist() == [1, 0, 1]
    (b,) = list(DataLoader(list(np.zeros((2, 3), np.float32)), batch_size=2))    # items are arrays, not pairs
    assert isinstance(b, np.ndarray) and b.shape == (2, 3) and b.dtype == np.float32
    with pytest.raises(ValueError, match='tuples of 2 values'): list(DataLoader([(1, 2), (3,)], batch_size=2))
    ragged = [(np.zeros(2), 0), (np.zeros(3), 1)]
    with pytest.raises(ValueError, match='cannot be stacked into a batch'): list(DataLoader(ragged, batch_size=2))


DATALOADER_BAD = [
    (lambda x: DataLoader(list(x), x, 2), TypeError, 'x is a dataset (list), whose items hold the targets: leave y out'),
    (lambda x: DataLoader(list(zip(x, x)), 2), TypeError, 'the batch size goes by name: DataLoader(dataset, batch_size=2)'),
    (lambda x: DataLoader(3, x, 2), TypeError, 'x must be a numpy.ndarray or a dataset (len() and indexing), got int'),
    (lambda x: DataLoader(x, None, 2), TypeError, 'y is missing: pass the targets'),
    (lambda x: DataLoader(x, list(x), 2), TypeError, 'y must be a numpy.ndarray, got list'),
    (lambda x: DataLoader([], batch_size=2), ValueError, 'the dataset is empty'),
    (lambda x: DataLoader(list(zip(x, x)), batch_size=None), TypeError, 'batch_size must be a positive integer, got None'),
    (lambda x: DataLoader(np.array(1), x, 2), ValueError, 'x must hold one example per row, got a 0-d array'),
    (lambda x: DataLoader(x, x[:-1], 2), ValueError, 'same number of examples, got 10 and 9'),
    (lambda x: DataLoader(x[:0], x[:0], 2), ValueError, 'x and y are empty'),
    (lambda x: DataLoader(x, x, 0), ValueError, 'batch_size must be a positive integer, got 0'),
    (lambda x: DataLoader(x, x, 2.0), TypeError, 'batch_size must be a positive integer, got 2.0'),
    (lambda x: DataLoader(x, x, True), TypeError, 'batch_size must be a positive integer, got True'),
    (lambda x: DataLoader(x, x, 2, shuffle='yes'), TypeError, "shuffle must be True or False, got 'yes'"),
    (lambda x: DataLoader(x, x, 2, drop_last=1), TypeError, 'drop_last must be True or False, got 1'),
    (lambda x: DataLoader(x, x, 2, seed='0'), TypeError, 'seed must be None, an int seed or a numpy.random.Generator, got str'),
    (lambda x: DataLoader(x, x, 2, seed=1.5), TypeError, 'got float'),
    (lambda x: DataLoader(x, x, 11, drop_last=True), ValueError, 'batch_size 11 is larger than the 10 examples'),
]


@pytest.mark.parametrize('call, exc, message', DATALOADER_BAD)
def test_dataloader_rejects_bad_arguments(call, exc, message):
    with pytest.raises(exc) as e: call(np.arange(10))
    assert message in str(e.value)
