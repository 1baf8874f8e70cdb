"""nbdev export processor that lets one notebook write several modules.

nbdev 3 writes a notebook's `#| default_exp` module afresh on every export, but cells marked
`#| export other_module` are *appended* to `other_module.py`, which must already exist: re-running
`nbdev-export` would append them again (nbdev issues #742, #987). A lesson of this course often
teaches two modules at once (a layer and its Numba kernel, the optimiser and the initialisers), so
`pyproject.toml` lists `ModuleOwners` under `[tool.nbdev] export_procs`. Before nbdev writes a
notebook's modules, it gives every module that no notebook owns through `#| default_exp` a fresh
file, written by the first notebook (in nbdev's export order) that exports into it; later notebooks
append as usual. It also refuses the two layouts nbdev would get silently wrong: two notebooks with
the same `#| default_exp`, and a notebook that appends to a module whose owner is exported after it.

The same processor keeps the course's exercise markers out of the package. An instructor marks the code students write
with nbgrader's solution markers, a line `### BEGIN SOLUTION` before and `### END SOLUTION` after it, in a cell that
carries `#| exercise NAME`; the exercise's check cells carry the same directive (see nbs/11_exercises.ipynb and
tools/exercises). nbdev would export the marker lines as comments; `ModuleOwners` removes them from every exported
cell, so `dlcourse/*.py` reads as if they were not there. `strip_solution_markers` and `exercise_name` are shared with
the docs build (tools/docs/docsite.py) and the exercise tools, so that all of them read the markers alike.

Always export the whole project (`nbdev-export`), as the test command does.
"""
import os
import re
from pathlib import Path

from fastcore.nbio import read_nb
from nbdev.config import get_config
from nbdev.doclinks import nbglob

__all__ = ['ModuleOwners', 'module_table', 'SOLUTION_BEGIN', 'SOLUTION_END', 'strip_solution_markers', 'exercise_name',
           'solution_regions']

_EXPORT_DIRECTIVES = ('export', 'exporti', 'exports')

SOLUTION_BEGIN, SOLUTION_END = '### BEGIN SOLUTION', '### END SOLUTION'   # nbgrader's markers, a line each
# nbgrader's markers: solution regions, and hidden tests (parts of a check cell left out of the student's copy)
_MARKER_RE = re.compile(r'^[ \t]*### (?:BEGIN|END) (?:SOLUTION|HIDDEN TESTS)[ \t]*(?:\n|$)', re.MULTILINE)
_EXERCISE_RE = re.compile(r'^\s*#\|\s*exercise:?\s+([A-Za-z_][\w-]*)\s*$', re.MULTILINE)


def strip_solution_markers(source):
    "`source` without nbgrader's marker lines (solution regions and hidden tests keep their code)"
    out = _MARKER_RE.sub('', source)
    return out if source.endswith('\n') else out.rstrip('\n')


def exercise_name(source):
    "The NAME of a code cell's `#| exercise NAME` directive (nbdev or Quarto form), or None"
    m = _EXERCISE_RE.search(source)
    return m.group(1) if m else None


def solution_regions(source):
    "The solution regions of a cell's source, as lists of lines without the markers; ValueError if unbalanced"
    regions, current = [], None
    for n, line in enumerate(source.splitlines(), 1):
        mark = line.strip()
        if mark == SOLUTION_BEGIN:
            if current is not None: raise ValueError(f"line {n}: {SOLUTION_BEGIN} inside a solution region")
            current = []
        elif mark == SOLUTION_END:
            if current is None: raise ValueError(f"line {n}: {SOLUTION_END} without {SOLUTION_BEGIN}")
            regions.append(current); current = None
        elif current is not None: current.append(line)
    if current is not None: raise ValueError(f"{SOLUTION_BEGIN} without {SOLUTION_END}")
    return regions


def _targets(path):
    "The `default_exp` module of the notebook at `path` and the modules its cells export into by name"
    default, named = None, set()
    for cell in read_nb(path).cells:
        if cell.cell_type != 'code': continue
        directives = cell.directives
        if 'default_exp' in directives: default = str(directives['default_exp']).split()[0]
        for d in _EXPORT_DIRECTIVES:
            args = str(directives.get(d) or '').split()
            if args: named.add(args[0])
    return default, named


def module_table():
    "Notebooks in nbdev's export order, each as `(path, default_exp, modules exported by name)`"
    return [(p.resolve(), *_targets(p)) for p in nbglob(as_path=True).sorted('name')]


def _owners(table):
    owners = {}
    for path, default, _ in table:
        if default is None: continue
        if default in owners:
            raise ValueError(f"{owners[default].name} and {path.name} both declare `#| default_exp {default}`: "
                             "nbdev would keep only one of them. Give each module one owner notebook and "
                             f"use `#| export {default}` in the others.")
        owners[default] = path
    return owners


def _fresh_module(fname, nb_path, mod, writers):
    "Start `fname` as nbdev starts a module, so that nbdev can append to it and fill in `__all__`"
    fname.parent.mkdir(parents=True, exist_ok=True)
    src = os.path.relpath(nb_path, fname.parent).replace(os.sep, '/')
    names = ', '.join(p.stem for p in writers)
    fname.write_text(f'"""`{mod}`, written by the notebooks {names}."""\n\n'
                     f'# AUTOGENERATED! DO NOT EDIT! File to edit: {src}.\n\n'
                     '# %% auto #0\n__all__ = []\n', encoding='utf-8')


class ModuleOwners:
    "Give each module without a `#| default_exp` owner a fresh file before its first notebook exports into it; drop solution markers"
    def __init__(self, nb): self.nb = nb

    def __call__(self, cell):
        "Remove nbgrader's marker lines from a code cell before nbdev writes it into a module"
        if cell.cell_type == 'code' and '### ' in cell.source: cell.source = strip_solution_markers(cell.source)

    def begin(self):
        here = Path(self.nb.path_).resolve()
        table = module_table()
        order = {path: i for i, (path, _, _) in enumerate(table)}
        if here not in order: return  # a notebook outside the project: plain nbdev behaviour
        owners = _owners(table)
        _, default, named = table[order[here]]
        lib_path = get_config().lib_path
        for mod in sorted(named - {default}):
            if mod in owners:
                if order[owners[mod]] > order[here]:
                    raise ValueError(f"{here.name} exports into `{mod}`, but that module's owner "
                                     f"{owners[mod].name} is exported after it and would overwrite those cells. "
                                     "Move the cells, or let the earlier notebook own the module.")
                continue
            writers = [path for path, _, mods in table if mod in mods]
            if writers[0] == here:
                _fresh_module(lib_path/(mod.replace('.', '/') + '.py'), here, mod, writers)
