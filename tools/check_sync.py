"""Check that the package, the notebooks and the README agree (part of the test command).

1. `nbdev-export` leaves `dlcourse/` unchanged: the package is what the notebooks export.
2. `nbdev-clean` leaves `nbs/` unchanged: the notebooks are committed clean (outputs and widget state kept).
3. README.md is what tools/readme.py renders from nbs/index.ipynb.
Each command's changes are left in place, so after a failure the working tree holds the synced files.
"""
import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'tools'))
import readme  # noqa: E402


def snapshot(folder, pattern):
    "Hash of every file matching `pattern` under `folder` (caches excluded)"
    return {p.relative_to(ROOT).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob(pattern)) if p.is_file() and '__pycache__' not in p.parts
            and '.ipynb_checkpoints' not in p.parts}


def changed(before, after):
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def run_and_compare(cmd, folder, pattern, advice):
    before = snapshot(folder, pattern)
    subprocess.run(cmd, cwd=ROOT, check=True)
    diff = changed(before, snapshot(folder, pattern))
    if diff:
        print(f"FAIL: `{' '.join(cmd)}` changed {len(diff)} file(s): {', '.join(diff)}\n      {advice}")
    else:
        print(f"ok: `{' '.join(cmd)}` changed nothing")
    return not diff


def main():
    ok = run_and_compare(['nbdev-export'], ROOT/'dlcourse', '*.py',
                         "dlcourse/ is generated: edit the notebooks, run nbdev-export, commit both")
    ok &= run_and_compare(['nbdev-clean'], ROOT/'nbs', '*.ipynb', "run nbdev-clean before committing notebooks")
    text = readme.render()
    if (ROOT/'README.md').exists() and (ROOT/'README.md').read_text(encoding='utf-8') == text:
        print("ok: README.md matches nbs/index.ipynb")
    else:
        print("FAIL: README.md is out of date with nbs/index.ipynb: run `python tools/readme.py`")
        ok = False
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
