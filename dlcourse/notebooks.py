"""`dlcourse notebooks DIR`: the course notebooks, and the data they read, copied out of the installed package, so that
whoever installed dlcourse from a wheel (`pip install "dlcourse[course]"`) can open the course in JupyterLab.

The wheel carries `nbs/` as `dlcourse/course/` (pyproject.toml maps it); in a source checkout the notebooks are read
from `nbs/` itself."""
import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path

from dlcourse.core import as_path, check_bool

PATTERNS = ('*.ipynb', 'glossary.md', 'lib/*.ipynb', 'data/*.json')   # what the wheel carries of nbs/ (pyproject.toml)


def course_dir():
    "The folder of the course notebooks: `dlcourse/course` in an installed wheel, `nbs/` in a source checkout"
    here = Path(__file__).resolve().parent
    for folder in (here/'course', here.parent/'nbs'):
        if (folder/'index.ipynb').is_file(): return folder
    raise FileNotFoundError(errno.ENOENT, "the course notebooks are not installed with this dlcourse (neither "
                            f"{here/'course'} nor a source checkout's nbs/ exists): reinstall it from a wheel")


def course_files(folder=None):  # the course folder (default: `course_dir()`)
    "The course's files, relative to its folder and sorted: the notebooks, the library notebooks, the glossary, their data"
    folder = course_dir() if folder is None else as_path(folder, 'folder')
    return sorted({p.relative_to(folder) for pattern in PATTERNS for p in folder.glob(pattern) if p.is_file()})


def copy_notebooks(dest,          # the folder to copy the course into (created if needed)
                   force=False):  # replace course files that are already there?
    """Copy the course into `dest` and return the paths written. Files already there are refused (FileExistsError naming
    them) unless `force`. All files are first copied into a temporary folder inside `dest` and only then renamed into
    place, so a failed copy (a full disk, say) changes nothing there."""
    dest, force = as_path(dest, 'dest'), check_bool(force, 'force')
    src = course_dir()
    files = course_files(src)
    if dest.exists() and not dest.is_dir(): raise NotADirectoryError(errno.ENOTDIR, f"{dest} is a file, not a folder")
    folders = [f for f in files if (dest/f).is_dir()]
    if folders: raise IsADirectoryError(errno.EISDIR, f"{dest/folders[0]} is a folder: the course has a file of that name")
    there = [str(f) for f in files if os.path.lexists(dest/f)]
    if there and not force:
        raise FileExistsError(f"{dest} already holds {len(there)} of the course's {len(files)} files "
                              f"({', '.join(there[:3])}{', ...' if len(there) > 3 else ''}): nothing was copied; "
                              "choose another folder, or replace them with --force (force=True)")
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest, prefix='.dlcourse-notebooks-'))
    try:
        for f in files:
            (staging/f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src/f, staging/f)
        for f in files:
            (dest/f).parent.mkdir(exist_ok=True)
            os.replace(staging/f, dest/f)
    except BaseException:
        if created: shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [dest/f for f in files]


# ------------------------------------------------------------------------------------------------------- the command
def add_parser(sub):  # the `dlcourse` command's subparsers
    "Register `dlcourse notebooks DIR [--force]`"
    p = sub.add_parser('notebooks', help='copy the course notebooks (and the data they read) into a folder',
                       description='Copy the course notebooks, the library notebooks, the glossary and the data the '
                                   'lessons read into DIR, to open them with `jupyter lab DIR` (pip install '
                                   '"dlcourse[course]" installs JupyterLab and the widgets). Files already in DIR are '
                                   'refused unless --force; nothing is written unless everything is.')
    p.add_argument('dir', metavar='DIR', help='the folder to copy the course into (created if needed)')
    p.add_argument('--force', action='store_true', help='replace course files already in DIR')


def run(args):  # the parsed command line
    "`dlcourse notebooks`: copy the course, say where it is; exit status 0, or 2 with a one-line error"
    try: paths = copy_notebooks(args.dir, force=args.force)
    except (ValueError, TypeError, OSError) as e:
        msg = e.strerror + (f": {e.filename}" if e.filename else '') if isinstance(e, OSError) and e.strerror else str(e)
        print(f"dlcourse notebooks: error: {' '.join(msg.split())}", file=sys.stderr)
        return 2
    lessons = sorted(p.name for p in paths if p.suffix == '.ipynb' and p.name[0].isdigit())
    print(f"copied {len(paths)} files into {args.dir}: {len(lessons)} lessons ({lessons[0]} to {lessons[-1]}), "
          f"the library notebooks in lib/, the glossary and the data the lessons read")
    print(f"open the course with: jupyter lab {args.dir}")
    return 0
