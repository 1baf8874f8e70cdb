"""dlcourse.data against hostile and unlucky input: decompression bombs and lying IDX headers (read in a child process
under a memory cap, which proves the bound), downloads from servers that are slow or silent (a total deadline), a process
killed mid-download (no partial file), progress on a terminal and silence on a pipe, a mistyped `root` (no quiet
fallback on another copy), the permissions of the files written (the umask's), and loaders that could yield no batch.

Needs Debian's `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist) like tests/test_data.py: under the test
command (DLCOURSE_REQUIRE_ALL=1) its absence is a failure, by hand a skip. Linux only (/proc, RLIMIT_AS, a pty), like the
rest of the suite. No test uses the internet or the user's cache.
"""
import gzip
import hashlib
import http.server
import json
import os
import pty
import select
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REQUIRE_ALL

from dlcourse import data
from dlcourse.data import (DATASETS, IDX_FILES, DataLoader, fashion_mnist, load_dataset, mnist, read_idx, write_idx)

DEBIAN = Path('/usr/share/datasets/fashion-mnist')
FILES = [n for split in IDX_FILES.values() for n in split]
LABELS = 't10k-labels-idx1-ubyte'
MiB, GiB = 1 << 20, 1 << 30
WORKTREE = str(Path(data.__file__).resolve().parent.parent)


@pytest.fixture(scope='session')
def debian():
    "The folder of Debian's Fashion-MNIST files: required under the test command"
    if not all((DEBIAN/f'{n}.gz').is_file() for n in FILES):
        message = (f"Fashion-MNIST is not installed in {DEBIAN}: run `apt-get update && apt-get install -y "
                   "dataset-fashion-mnist` (tools/test needs it)")
        if REQUIRE_ALL: pytest.fail(message)
        pytest.skip(message)
    return DEBIAN


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    "Every test gets an empty cache of its own and the official download addresses"
    monkeypatch.setenv('DLCOURSE_DATA', str(tmp_path/'cache'))
    for src in DATASETS.values(): monkeypatch.delenv(src.url_env, raising=False)
    return tmp_path/'cache'


def without_system_dirs(monkeypatch, name='fashion-mnist', **changes):
    monkeypatch.setitem(DATASETS, name, DATASETS[name]._replace(system_dirs=(), **changes))


def files_in(folder):
    "Every file under `folder`, hidden and temporary ones included"
    return sorted(p.name for p in folder.rglob('*') if p.is_file()) if folder.exists() else []


def idx_header(dims, code=0x08):
    return bytes([0, 0, code, len(dims)]) + b''.join(int(d).to_bytes(4, 'big') for d in dims)


def child_env():
    """The environment of a child process (started in a folder without a dlcourse of its own): the dlcourse tested here,
    one thread for the numerical libraries"""
    path = os.pathsep.join(p for p in (WORKTREE, os.environ.get('PYTHONPATH', '')) if p)
    return {**os.environ, 'PYTHONPATH': path, 'OPENBLAS_NUM_THREADS': '1', 'OMP_NUM_THREADS': '1',
            'MKL_NUM_THREADS': '1', 'NUMBA_NUM_THREADS': '1'}


# ------------------------------------------------------------------------------------- IDX: memory bounded by the header

def write_bomb(path, dims=(10,), zeros=4 * GiB):
    """A valid gzip file: an IDX header for `dims` and its data, then `zeros` bytes of zeros, in about zeros / 1000 bytes
    (gzip members of 16 MiB of zeros each, which gzip readers join into one stream)"""
    member = gzip.compress(bytes(16 * MiB), compresslevel=9, mtime=0)
    with open(path, 'wb') as f:
        f.write(gzip.compress(idx_header(dims) + bytes(int(np.prod(dims))), mtime=0))
        for _ in range(zeros // (16 * MiB)): f.write(member)
    return path


CAPPED_CHILD = r'''
import gzip, json, resource, sys
from dlcourse.data import read_idx
def vm(): return int(next(l for l in open('/proc/self/status') if l.startswith('VmSize:')).split()[1]) * 1024
cap = vm() + (256 << 20)                        # what this process uses now, plus 256 MiB
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
result = {}
for name, kwargs in json.loads(sys.argv[1]):
    try: result[name] = ['read', list(read_idx(name, **kwargs).shape)]
    except ValueError as e: result[name] = ['ValueError', str(e)]
    except MemoryError: result[name] = ['MemoryError', '']
try: gzip.open(sys.argv[2]).read(); result['naive'] = 'read'  # what reading first and checking afterwards does
except MemoryError: result['naive'] = 'MemoryError'
print(json.dumps(result))
'''


def test_bombs_and_lying_headers_are_refused_within_a_memory_cap(tmp_path):
    "In a child process allowed 256 MiB more than it has: clear errors for every bomb, never a MemoryError"
    bomb = write_bomb(tmp_path/'bomb.gz')                                       # 10 bytes declared, then 4 GiB of zeros
    assert bomb.stat().st_size < 8 * MiB
    lying = tmp_path/'lying.gz'                                                 # declares 3 GiB, holds 64 MiB
    lying.write_bytes(gzip.compress(idx_header((3, GiB)) + bytes(64 * MiB), mtime=0))
    huge = tmp_path/'huge.gz'                                                   # declares 2**96 bytes
    huge.write_bytes(gzip.compress(idx_header((2**32 - 1,) * 3), mtime=0))
    plain = tmp_path/'plain.idx'                                                # 8 GiB, sparse: 10 bytes declared
    with open(plain, 'wb') as f: f.write(idx_header((10,)) + bytes(10)); f.truncate(8 * GiB)
    short = tmp_path/'short.idx'                                                # declares 3 GiB, holds 10 bytes
    short.write_bytes(idx_header((3, GiB)) + bytes(10))
    honest = write_bomb(tmp_path/'honest.gz', dims=(64, MiB), zeros=0)          # 64 MiB, as declared: read
    cases = [(str(bomb), {}), (str(lying), {'max_bytes': 2**40}), (str(huge), {}), (str(plain), {}),
             (str(short), {'max_bytes': 2**40}), (str(honest), {})]
    r = subprocess.run([sys.executable, '-c', CAPPED_CHILD, json.dumps(cases), str(bomb)], env=child_env(),
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result['naive'] == 'MemoryError'                     # the cap binds: the whole bomb does not fit under it
    assert result[str(honest)] == ['read', [64, MiB]]           # ... but real data of 64 MiB do
    assert result[str(bomb)] == ['ValueError', f"{bomb}: wrong size: the header's dimensions (10,) of uint8 need 10 "
                                 "bytes of data, the file has more than 1,048,586 (over 1,048,576 bytes too many; the "
                                 "rest was not read)"]
    assert result[str(lying)] == ['ValueError', f"{lying}: wrong size: the header's dimensions (3, 1073741824) of uint8 "
                                  "need 3,221,225,472 bytes of data, the file has 67,108,864 (truncated)"]
    kind, message = result[str(huge)]
    assert kind == 'ValueError' and message.startswith(
        f"{huge}: the header's dimensions (4294967295, 4294967295, 4294967295) of uint8 need "
        "79,228,162,458,924,105,385,300,197,375 bytes of data, more than this machine has memory (")
    assert message.endswith(" bytes); refusing to read it")
    assert result[str(plain)] == ['ValueError', f"{plain}: wrong size: the header's dimensions (10,) of uint8 need 10 "
                                  f"bytes of data, the file has {8 * GiB - 8:,} ({8 * GiB - 18:,} bytes too many)"]
    assert result[str(short)][1].endswith("need 3,221,225,472 bytes of data, the file has 10 (truncated)")


def test_max_bytes(tmp_path):
    path = write_idx(tmp_path/'a.gz', np.arange(100, dtype=np.int32))
    np.testing.assert_array_equal(read_idx(path, max_bytes=400), np.arange(100))
    with pytest.raises(ValueError, match=r"a.gz: the header's dimensions \(100,\) of int32 need 400 bytes of data, "
                                         r"more than max_bytes \(399 bytes\); refusing to read it"):
        read_idx(path, max_bytes=399)
    with pytest.raises(ValueError, match='max_bytes must be a positive integer, got 0'): read_idx(path, max_bytes=0)
    with pytest.raises(TypeError, match="max_bytes must be a positive integer, got '1'"): read_idx(path, max_bytes='1')


def test_multibyte_types_are_converted_in_place(tmp_path):
    "Big-endian data are swapped into a writable array of this machine's byte order, beyond the first growth step"
    a = np.arange(5 * MiB, dtype=np.int32) - 7                                  # 20 MiB: the buffer doubles once
    content = idx_header(a.shape, 0x0C) + a.astype('>i4').tobytes()
    (tmp_path/'a.gz').write_bytes(gzip.compress(content, compresslevel=1))
    (tmp_path/'a.idx').write_bytes(content)
    for name in ('a.gz', 'a.idx'):
        b = read_idx(tmp_path/name)
        assert b.dtype == np.dtype('=i4') and b.flags.writeable and b.flags.c_contiguous
        np.testing.assert_array_equal(b, a)


def test_a_bomb_in_the_cache_is_refused_without_reading_it(isolated, monkeypatch):
    "With the official size known, a header declaring another is refused unread; one declaring it is read no further"
    without_system_dirs(monkeypatch)
    cache = isolated/'fashion-mnist'
    cache.mkdir(parents=True)
    write_bomb(cache/'t10k-images-idx3-ubyte.gz', dims=(20000, 28, 28), zeros=256 * MiB)   # twice the official size
    write_bomb(cache/f'{LABELS}.gz', dims=(10000,), zeros=256 * MiB)                      # the official size, then more
    with pytest.raises(FileNotFoundError) as e: fashion_mnist('test', download=False)
    assert ("t10k-images-idx3-ubyte.gz: checksum mismatch: its header declares 15,680,016 bytes of content, the "
            "official file has 7,840,016") in str(e.value)
    assert data._has_official(cache, LABELS, DATASETS['fashion-mnist'].checksums[LABELS]) is False
    with pytest.raises(ValueError, match=r"wrong size: the header's dimensions \(10000,\) of uint8 need 10,000 bytes of "
                                         r"data, the file has more than 1,058,576 \(over 1,048,576 bytes too many"):
        data._read_checked(cache/f'{LABELS}.gz', DATASETS['fashion-mnist'].checksums[LABELS])


# ------------------------------------------------------------------------------------------- downloads with a deadline

class Server:
    "An HTTP server on 127.0.0.1 whose GET answers are written by `answer(handler)`"
    def __init__(self, answer):
        self.requests, self.sent = [], threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args): pass
            def do_GET(self):
                server.requests.append(self.path)
                try: answer(self, server)
                except (BrokenPipeError, ConnectionResetError): pass    # the client gave up

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.02), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown(); self.httpd.server_close(); self.thread.join()


@pytest.fixture
def serve():
    servers = []
    def start(answer):
        servers.append(Server(answer))
        return servers[-1]
    yield start
    for s in servers: s.close()


def trickle(content, pause, piece=1, length=True):
    "An answer sending `content` `piece` bytes at a time, `pause` seconds apart"
    def answer(h, server):
        h.send_response(200)
        if length: h.send_header('Content-Length', str(len(content)))
        h.end_headers()
        for i in range(0, len(content), piece):
            h.wfile.write(content[i:i + piece]); h.wfile.flush()
            server.sent.set()
            time.sleep(pause)
    return answer


def slow_headers(h, server):
    "Headers one byte every 0.1 s: no single wait is long"
    for b in b'HTTP/1.0 200 OK\r\nContent-Length: 1000000\r\nX-Padding: ' + b'x' * 10000:
        h.wfile.write(bytes([b])); h.wfile.flush(); time.sleep(0.1)


def download_threads(): return [t for t in threading.enumerate() if t.name == 'dlcourse download']


def wait_for_download_threads():
    "The helper threads end soon after the caller gives up"
    deadline = time.monotonic() + 10
    while download_threads() and time.monotonic() < deadline: time.sleep(0.02)
    assert download_threads() == []


@pytest.mark.parametrize('how', ['body', 'headers'])
def test_a_trickling_server_is_given_up_at_the_deadline(how, isolated, monkeypatch, serve):
    "One byte every 0.1 s keeps a per-read timeout happy forever; the total deadline ends it"
    without_system_dirs(monkeypatch)
    server = serve(trickle(bytes(100_000), 0.1) if how == 'body' else slow_headers)
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as e: fashion_mnist('test', base_url=server.url, timeout=1.5)
    took = time.monotonic() - start
    assert 1.5 <= took < 4, took
    message = str(e.value)
    assert (f"download from {server.url}: {server.url}t10k-images-idx3-ubyte.gz: not downloaded within timeout=1.5 s, "
            "the total time a download may take (") in message
    assert 'nothing was kept. A larger timeout= or a nearer mirror (base_url=) may help' in message
    assert server.requests == ['/t10k-images-idx3-ubyte.gz']
    assert files_in(isolated) == []
    wait_for_download_threads()


def test_a_silent_server_is_given_up_at_the_deadline(isolated, monkeypatch):
    "A server that accepts connections (the kernel does, for a listening socket) and never answers"
    without_system_dirs(monkeypatch)
    with socket.create_server(('127.0.0.1', 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        start = time.monotonic()
        with pytest.raises(FileNotFoundError, match='not downloaded within timeout=1 s.*0 bytes received'):
            mnist('test', base_url=url, timeout=1)
        assert 1 <= time.monotonic() - start < 3.5
    assert files_in(isolated) == []
    wait_for_download_threads()


def test_a_slow_download_within_the_deadline_is_checked_and_kept(debian, isolated, monkeypatch, serve, tmp_path):
    without_system_dirs(monkeypatch)
    official = (debian/f'{LABELS}.gz').read_bytes()
    server = serve(trickle(official, 0.02, piece=512))                    # about 0.2 s
    dest = isolated/'fashion-mnist'/f'{LABELS}.gz'
    data._download(server.url + f'{LABELS}.gz', dest, DATASETS['fashion-mnist'].checksums[LABELS], timeout=10)
    assert dest.read_bytes() == official and files_in(isolated) == [f'{LABELS}.gz']
    changed = bytearray(gzip.decompress(official)); changed[100] ^= 1
    server = serve(trickle(gzip.compress(bytes(changed)), 0.02, piece=512))
    dest.unlink()
    with pytest.raises(ValueError, match=f'checksum mismatch for {server.url}{LABELS}.gz: .*the file was not kept'):
        data._download(server.url + f'{LABELS}.gz', dest, DATASETS['fashion-mnist'].checksums[LABELS], timeout=10)
    assert files_in(isolated) == []


@pytest.mark.parametrize('timeout, exc, message', [
    (0, ValueError, 'timeout must be a number in (0, 1000000], got 0'),
    (-1, ValueError, 'timeout must be a number in (0, 1000000], got -1'),
    (1e12, ValueError, 'timeout must be a number in (0, 1000000], got 1000000000000.0'),
    (float('inf'), ValueError, 'timeout must be a number in (0, 1000000], got inf'),
    (float('nan'), ValueError, 'timeout must be a number in (0, 1000000], got nan'),
    ('60', TypeError, "timeout must be a number in (0, 1000000], got '60' (str)"),
    (None, TypeError, 'timeout must be a number in (0, 1000000], got None'),
])
def test_bad_timeouts(timeout, exc, message):
    with pytest.raises(exc) as e: fashion_mnist('test', timeout=timeout)
    assert message in str(e.value)


def test_the_default_deadline():
    assert data.DOWNLOAD_TIMEOUT == 600
    import inspect
    for f in (load_dataset, fashion_mnist, mnist):
        assert inspect.signature(f).parameters['timeout'].default == data.DOWNLOAD_TIMEOUT


DOWNLOAD_CHILD = r'''
import sys
from pathlib import Path
from dlcourse import data
print('started', flush=True)
data._download(sys.argv[1], Path(sys.argv[2]), data.DATASETS['fashion-mnist'].checksums[sys.argv[3]], timeout=60)
'''


def test_a_process_killed_mid_download_leaves_no_file(debian, isolated, serve):
    official = (debian/'t10k-images-idx3-ubyte.gz').read_bytes()
    server = serve(trickle(official, 0.01, piece=64 * 1024))               # about 0.7 s in all
    dest = isolated/'fashion-mnist'/'t10k-images-idx3-ubyte.gz'
    child = subprocess.Popen([sys.executable, '-c', DOWNLOAD_CHILD, server.url + dest.name, str(dest), dest.stem],
                             env=child_env(), cwd=isolated.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert server.sent.wait(60)                                        # the download has begun
        time.sleep(0.1)
        assert child.poll() is None
        child.kill()
    finally:
        child.wait(30)
    assert dest.parent.is_dir() and files_in(isolated) == []


def run_download_child(stderr, server, dest):
    return subprocess.Popen([sys.executable, '-c', DOWNLOAD_CHILD, server.url + dest.name, str(dest), dest.stem],
                            env=child_env(), cwd=dest.parent.parent.parent, stdout=subprocess.PIPE, stderr=stderr)


def test_progress_on_a_terminal_and_none_on_a_pipe(debian, isolated, serve):
    official = (debian/f'{LABELS}.gz').read_bytes()
    server = serve(trickle(official, 0.3, piece=len(official) // 3 + 1))    # in three pieces, 0.3 s apart
    dest = isolated/'fashion-mnist'/f'{LABELS}.gz'
    master, slave = pty.openpty()
    try:
        child = run_download_child(slave, server, dest)
        os.close(slave)
        out = b''
        while True:                                                        # read the terminal until the child ends
            ready, _, _ = select.select([master], [], [], 30)
            try: chunk = os.read(master, 4096) if ready else b''
            except OSError: chunk = b''                                    # EIO: the child closed the terminal
            if not chunk: break
            out += chunk
        assert child.wait(30) == 0, child.stdout.read()
    finally:
        os.close(master)
    text = out.decode()
    size = f"{len(official) / 1e3:.1f} kB"
    assert f"\rdownloading {LABELS}.gz: " in text and f"{size} of {size} (100%)" in text and text.endswith('\n'), text
    dest.unlink()
    child = run_download_child(subprocess.PIPE, server, dest)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0 and dest.read_bytes() == official
    assert b'downloading' not in err and b'\r' not in err, err          # (a library's warning could still show here)


# ------------------------------------------------------------------------------------------------- root means root only

def put_official(debian, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for n in IDX_FILES['test']: (folder/f'{n}.gz').write_bytes((debian/f'{n}.gz').read_bytes())


def test_a_mistyped_root_never_falls_back(debian, isolated, monkeypatch, tmp_path, serve):
    "Valid copies in the cache and the system folder, a download address: a wrong root is still an error"
    put_official(debian, isolated/'fashion-mnist')
    server = serve(trickle(b'', 0))
    monkeypatch.setenv('DLCOURSE_FASHION_MNIST_URL', server.url)
    with pytest.raises(FileNotFoundError) as e: fashion_mnist('test', root='/typo')
    assert str(e.value) == (
        "Fashion-MNIST (test) not found in root='/typo': no such folder. With root given, only that folder is read (not "
        "the cache, a system folder or a download); it must hold t10k-images-idx3-ubyte(.gz) and "
        "t10k-labels-idx1-ubyte(.gz). Correct root, or leave it out to search the usual places")
    empty = tmp_path/'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"not found in root='{empty}': no t10k-images-idx3-ubyte\\(.gz\\) and no "
                                                r"t10k-labels-idx1-ubyte\(.gz\)\. With root given"):
        fashion_mnist('test', root=empty)
    (empty/'t10k-images-idx3-ubyte.gz').write_bytes((debian/'t10k-images-idx3-ubyte.gz').read_bytes())
    with pytest.raises(FileNotFoundError, match=r": no t10k-labels-idx1-ubyte\(.gz\)\. With root given"):
        fashion_mnist('test', root=str(empty))
    with pytest.raises(FileNotFoundError, match=f"not found in root='{empty}/t10k-images-idx3-ubyte.gz': not a folder"):
        fashion_mnist('test', root=empty/'t10k-images-idx3-ubyte.gz')
    with pytest.raises(FileNotFoundError, match=r"MNIST \(train\) not found in root='/typo': no such folder.*"
                                                r"train-images-idx3-ubyte\(.gz\) and train-labels-idx1-ubyte\(.gz\)"):
        mnist('train', root=Path('/typo'), download=True)
    assert server.requests == []                                           # nothing was downloaded either
    assert load_dataset('fashion-mnist', 'test').source == isolated/'fashion-mnist'    # without root: the cache


def test_a_relative_root_is_shown_with_its_absolute_path(debian, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    put_official(debian, tmp_path/'data')
    with pytest.raises(FileNotFoundError, match=f"not found in root='dat' \\({tmp_path}/dat\\): no such folder"):
        fashion_mnist('test', root='dat')
    assert load_dataset('fashion-mnist', 'test', root='data').source == Path('data')


def test_root_and_download_arguments():
    with pytest.raises(ValueError, match='root and base_url cannot be combined: with root given, only that folder is read'):
        fashion_mnist('test', root='/typo', base_url='http://127.0.0.1:1/')
    with pytest.raises(TypeError, match="download must be True or False, got 'no'"): fashion_mnist('test', download='no')


# ---------------------------------------------------------------------------------------- the permissions of new files

@pytest.fixture
def umask():
    "set(mask): change the process's umask for the test"
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def mode(path): return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize('mask', [0o022, 0o002, 0o077], ids=oct)
def test_files_written_get_the_umask_permissions(mask, umask, debian, isolated, monkeypatch, tmp_path):
    umask(mask)
    assert data._umask() == mask
    assert mode(write_idx(tmp_path/'a.gz', np.arange(3, dtype=np.uint8))) == 0o666 & ~mask
    assert mode(write_idx(tmp_path/'a.idx', np.arange(3, dtype=np.uint8))) == 0o666 & ~mask
    server = Server(lambda h, s: trickle((debian/h.path[1:]).read_bytes(), 0, piece=1 << 20)(h, s))
    try:
        without_system_dirs(monkeypatch)
        load_dataset('fashion-mnist', 'test', base_url=server.url)
    finally:
        server.close()
    got = {p.name: mode(p) for p in (isolated/'fashion-mnist').iterdir()}
    assert got == {f'{n}.gz': 0o666 & ~mask for n in IDX_FILES['test']}


def test_write_idx_is_atomic(tmp_path, monkeypatch):
    "A failure while writing leaves the previous file intact and no temporary file"
    path = write_idx(tmp_path/'a.gz', np.arange(10, dtype=np.uint8))
    before = path.read_bytes()
    class Boom(Exception): pass
    def fail(*args, **kwargs): raise Boom
    monkeypatch.setattr(data.gzip.GzipFile, 'write', fail)
    with pytest.raises(Boom): write_idx(path, np.arange(20, dtype=np.uint8))
    assert path.read_bytes() == before and files_in(tmp_path) == ['a.gz']


# --------------------------------------------------------------------------------------------- loaders never run empty

@pytest.mark.parametrize('n, batch_size, drop_last', [(1, 1, False), (1, 5, False), (5, 5, True), (7, 3, True),
                                                      (7, 3, False), (3, 10**12, False)])
def test_every_epoch_has_a_batch_and_covers_what_it_should(n, batch_size, drop_last):
    x = np.arange(n)
    dl = DataLoader(x, -x, batch_size, drop_last=drop_last, seed=0)
    sizes = [len(xb) for xb, _ in dl]
    assert len(sizes) == len(dl) >= 1 and all(s >= 1 for s in sizes)
    assert sum(sizes) == (n // batch_size * batch_size if drop_last else n)


@pytest.mark.parametrize('x, y, batch_size, kwargs, exc, message', [
    (np.zeros(0), np.zeros(0), 4, {}, ValueError, 'x and y are empty: there is nothing to load'),
    (np.zeros((0, 28, 28)), np.zeros(0), 1, {'drop_last': True}, ValueError, 'x and y are empty'),
    (np.zeros(3), np.zeros(3), 4, {'drop_last': True}, ValueError,
     'batch_size 4 is larger than the 3 examples: with drop_last=True there would be no batch at all'),
    (np.zeros(3), np.zeros(3), -1, {}, ValueError, 'batch_size must be a positive integer, got -1'),
    (np.zeros(3), np.zeros(3), 2.5, {}, TypeError, 'batch_size must be a positive integer, got 2.5'),
    (np.zeros(3), np.zeros(3), None, {}, TypeError, 'batch_size must be a positive integer, got None'),
    (np.zeros(3), np.zeros(3), np.int64(0), {}, ValueError, 'batch_size must be a positive integer, got'),
])
def test_a_loader_that_would_yield_no_batch_is_refused(x, y, batch_size, kwargs, exc, message):
    "Refused when made, so no training loop can average a loss over no batches and report 0"
    with pytest.raises(exc) as e: DataLoader(x, y, batch_size, **kwargs)
    assert message in str(e.value)
