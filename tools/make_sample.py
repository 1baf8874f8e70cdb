"""Make (or check) the Fashion-MNIST sample that ships in dlcourse/data/.

The sample is the first SAMPLE_PER_CLASS['train'] images of each class of the official training file, in file order, and the
first SAMPLE_PER_CLASS['test'] of each class of the official test file, written as gzip-compressed IDX files. The official
files are found as `dlcourse.data.load_dataset` finds them (cache, Debian's /usr/share/datasets/fashion-mnist, download) and
checked against the official checksums; `--root DIR` reads them from DIR instead (checked all the same).

    python tools/make_sample.py           # write the sample files, print the SHA-256 of their contents
    python tools/make_sample.py --check   # check that the shipped files are exactly the sample, write nothing

The SHA-256 of each file's uncompressed content must equal dlcourse.data._SAMPLE_SHA256 (in nbs/07a_data.ipynb): the tool
prints the values to paste there if they differ. The gzip bytes themselves may differ between zlib versions; the content
cannot.
"""
import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from dlcourse import data

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT/'dlcourse'/'data'


def official(split, root):
    "The official split, checked against the official content checksums wherever it comes from"
    src = data.DATASETS['fashion-mnist']
    if root is None: return data.load_dataset('fashion-mnist', split)[:2]
    images, labels = (data._read_checked(data._find_file(Path(root), n) or Path(root)/n, src.checksums[n])
                      for n in data.IDX_FILES[split])
    return images, labels.astype(np.int64)


def sample_indices(labels, per_class):
    "The first `per_class` indices of each class, in file order"
    idx = np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in range(10)])
    if len(idx) != 10 * per_class: raise SystemExit(f"the split has fewer than {per_class} images of some class")
    return np.sort(idx)


def idx_bytes(array):
    "The IDX bytes of `array`, as dlcourse.data.write_idx writes them"
    path = OUT/'.tmp.idx'
    try: return data.write_idx(path, array).read_bytes()
    finally: path.unlink(missing_ok=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--root', help='folder holding the official files (default: search as load_dataset does)')
    parser.add_argument('--check', action='store_true', help='check the shipped files, write nothing')
    args = parser.parse_args(argv)
    ok, total = True, 0
    for split in data.SPLITS:
        images, labels = official(split, args.root)
        idx = sample_indices(labels, data.SAMPLE_PER_CLASS[split])
        for name, array in zip(data.SAMPLE_FILES[split], (images[idx], labels[idx].astype(np.uint8))):
            content, path = idx_bytes(array), OUT/name
            sha = hashlib.sha256(content).hexdigest()
            if args.check:
                shipped = data._read_bytes(path) if path.exists() else None
                state = 'ok' if shipped == content else 'MISSING' if shipped is None else 'DIFFERS'
            else:
                data.write_idx(path, array)
                state = 'written'
            ok &= state in ('ok', 'written') and data._SAMPLE_SHA256.get(name) == sha
            total += path.stat().st_size if path.exists() else 0
            print(f"{state:8s} {name}: {array.shape} {array.dtype}, {path.stat().st_size if path.exists() else 0:,} bytes, "
                  f"content SHA-256 {sha}" + ('' if data._SAMPLE_SHA256.get(name) == sha else '  (not in _SAMPLE_SHA256)'))
    print(f"total {total:,} bytes")
    if not ok:
        print("FAIL: the sample and dlcourse.data._SAMPLE_SHA256 disagree; if the new files are right, paste the checksums "
              "above into _SAMPLE_SHA256 in nbs/07a_data.ipynb", file=sys.stderr)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
