"""Student notebooks made from the lessons, and grading of submitted ones (nbs/11_exercises.ipynb explains the workflow).

    tools/exercises list                                  the marked exercises, by lesson
    tools/exercises build [LESSON ...] [--out exercises]  student notebooks: solutions replaced by stubs, checks kept
    tools/exercises grade SUBMISSIONS [--out grades.csv] [--feedback DIR] [--full] [--cell-timeout 60] [--timeout 600]
                          [--jobs 2] [--sandbox auto|bwrap|unshare|none] [--no-sandbox]

The instructor marks an exercise in a lesson with nbgrader's solution markers inside cells that carry `#| exercise NAME`,
and adds a check cell with the same directive (`dlcourse.exercises` reads the markers). `build` gives the
cells nbgrader's metadata and runs nbgrader's own preprocessors (ClearSolutions, ClearHiddenTests, ClearOutput, LockCells,
ComputeChecksums). `grade` runs every
submission in a sandbox of its own (tools/exercise_sandbox.py: no access to your files, no network, limits on CPU time,
memory and processes) through tools/exercise_harness.py, which only records what the student's code returns for the
lesson's check cases and test cells, as plain data. The lesson itself runs the same way once, for the expected values;
the comparison happens here, in the grader's process, so nothing a submission redefines can change a verdict. It
writes one CSV row per student and exercise, the totals per student (OUT-totals.csv) and a feedback page per student;
a submission that runs too long or kills its process gets `timeout` or `crashed` rows, never a crashed grader.
"""
import argparse
import ast
import builtins
import copy
import csv
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import symtable
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from dlcourse.exercises import exercise_name, solution_regions, strip_solution_markers

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
STATUS_ORDER = ('passed', 'failed', 'not done', 'error', 'timeout', 'crashed', 'missing')
CSV_COLUMNS = ('student', 'notebook', 'exercise', 'points', 'max_points', 'status', 'message')
sys.path.insert(0, str(Path(__file__).resolve().parent))   # exercise_sandbox, beside this file
_EXPORT = ('default_exp', 'export', 'exporti', 'exports')


class ExerciseError(ValueError):
    "A lesson's exercise markers are inconsistent; the message names the lesson, the cell and what to fix"


# ----------------------------------------------------------------------------------------------------- reading lessons
@dataclass
class Exercise:
    "One exercise of a lesson: the indices of its solution cells and check cells"
    name: str
    solutions: list = field(default_factory=list)
    checks: list = field(default_factory=list)

    def grade_ids(self):
        "nbgrader grade ids of the check cells: NAME-check, NAME-check2, ..."
        return [f"{self.name}-check" + (str(i + 1) if i else '') for i in range(len(self.checks))]


def read_nb(path):
    return nbformat.read(str(path), as_version=4)


def _directives(cell):
    "The names of the nbdev directives at the top of a code cell"
    names = []
    for line in cell.source.splitlines():
        if not line.strip(): continue
        if not line.lstrip().startswith('#|'): break
        names.append(line.lstrip()[2:].strip().split(':')[0].split(' ')[0])
    return names


def exercises(nb, where='notebook'):
    "{name: Exercise} of a notebook, in order; ExerciseError if the markers do not pair up or an exercise lacks a check"
    found = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != 'code': continue
        name = exercise_name(cell.source)
        try: regions = solution_regions(cell.source)
        except ValueError as e: raise ExerciseError(f"{where}, cell {i}: {e}") from None
        if name is None:
            if regions: raise ExerciseError(f"{where}, cell {i}: a solution region in a cell without `#| exercise NAME`")
            continue
        ex = found.setdefault(name, Exercise(name))
        (ex.solutions if regions else ex.checks).append(i)
    for ex in found.values():
        if not ex.solutions: raise ExerciseError(f"{where}: exercise {ex.name} has check cells but no solution region")
        if not ex.checks or ex.checks[-1] < ex.solutions[-1]:
            raise ExerciseError(f"{where}: exercise {ex.name} needs a check cell after its last solution cell")
    return found


def lessons(nbs=NBS):
    "{lesson name: path} of every notebook in `nbs` with marked exercises, in lecture order"
    out = {}
    for p in sorted(Path(nbs).glob('*.ipynb')):
        if exercises(read_nb(p), p.name): out[p.stem] = p
    return out


def mark(nb):
    "A copy of `nb` whose exercise cells carry nbgrader's metadata (solution cells; check cells graded, locked, 1 point)"
    nb = copy.deepcopy(nb)
    for ex in exercises(nb).values():
        for n, i in enumerate(ex.solutions):
            nb.cells[i].metadata['nbgrader'] = dict(grade=False, solution=True, locked=False, schema_version=3,
                                                   grade_id=f"{ex.name}-solution" + (str(n + 1) if n else ''))
        for i, gid in zip(ex.checks, ex.grade_ids()):
            nb.cells[i].metadata['nbgrader'] = dict(grade=True, solution=False, locked=True, points=1, schema_version=3,
                                                   grade_id=gid)
    return nb


# ------------------------------------------------------------------------------------------------------------- build
def _title(nb):
    first = next((c for c in nb.cells if c.cell_type == 'markdown'), None)
    line = first.source.splitlines()[0] if first is not None and first.source else ''
    return line.lstrip('# ').strip()


def intro_cell(nb, found):
    "The first cell of a student notebook: what to do, and the exercises"
    items = '\n'.join(f"- `{name}`" for name in found)
    return nbformat.v4.new_markdown_cell(
        f"**Exercises.** This is the student version of the lesson *{_title(nb)}*. Wherever a cell says "
        "`# YOUR CODE HERE`, replace `raise NotImplementedError()` with your code, then run the cell marked "
        "`#| exercise NAME` after it: it checks your code on small cases and, if something is wrong, tells you what "
        "it expected, what your code gave, and a hint. The checks use your code, never the package's. The exercises:\n\n"
        + items)


_FASTCORE = re.compile(r'^([ \t]*)from fastcore\.test import', re.MULTILINE)   # a development tool: students get the same
                                                                            # test functions from dlcourse.exercises

def student_version(nb):
    "The student notebook of an instructor notebook `nb`: nbgrader's stubs for every solution region, outputs cleared"
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions, ComputeChecksums, LockCells
    found = exercises(nb)
    nb = mark(nb)
    nb.metadata.pop('widgets', None)
    for cell in nb.cells:
        cell.metadata.pop('execution', None)                            # nbclient's timings of the lesson's own run
        if cell.cell_type == 'code': cell.source = _FASTCORE.sub(r'\1from dlcourse.exercises import', cell.source)
    resources = {}
    for pp in (ClearSolutions(), ClearHiddenTests(), ClearOutput(), LockCells(), ComputeChecksums()):
        nb, resources = pp.preprocess(nb, resources)
    nb.cells.insert(1, intro_cell(nb, found))
    nb.cells[1]['id'] = 'exercises-intro'
    return nb


def build(names=None, out=ROOT/'exercises', nbs=NBS):
    "Write the student notebooks of `names` (default: every lesson with exercises) into `out`; return their paths"
    available = lessons(nbs)
    names = list(available) if not names else [Path(n).stem for n in names]
    for n in names:
        if n not in available: raise ExerciseError(f"{n}: no such notebook with exercises in {nbs}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in names:
        path = out/f"{n}.ipynb"
        nbformat.write(student_version(read_nb(available[n])), str(path))
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------- lessons as graded
_AST_LOCK = threading.Lock()


def _ast(src):
    """ast.parse(src), one thread at a time: `grade` plans submissions in several threads, and CPython 3.11 counts the
    depth of the AST it builds in one place per interpreter, so a thread switch inside a parse (a finalizer that the
    garbage collector runs) makes another thread's parse fail with SystemError ("AST constructor recursion depth mismatch")"""
    with _AST_LOCK: return ast.parse(src)


def _imports_only(src):
    "True if the code is nothing but import statements (after its directives)"
    try: tree = _ast(src)
    except SyntaxError: return False
    return all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in tree.body)


TEST_BUDGET = 1.5     # CPU seconds a lesson's test cell may take in the lesson's own run to be graded
_TEST_CALLS = ('test_eq', 'test_close', 'test_fail', 'test_ne', 'test_is')
_BUILTINS = set(dir(builtins))


def _parse(src):
    "The AST of a cell (magic and shell lines blanked), or None"
    lines = ['' if l.lstrip().startswith(('%', '!')) else l for l in src.splitlines()]
    try: return _ast('\n'.join(lines))
    except SyntaxError: return None


def _names(src):
    """(names the cell binds at top level, names it reads from the notebook's namespace: at top level, or as globals
    of the functions and classes it defines)"""
    lines = ['' if l.lstrip().startswith(('%', '!')) else l for l in src.splitlines()]
    try: table = symtable.symtable('\n'.join(lines), '<cell>', 'exec')
    except SyntaxError: return set(), set()
    defined = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    used = {s.get_name() for s in table.get_symbols() if s.is_referenced()}
    todo = list(table.get_children())
    while todo:
        t = todo.pop()
        used |= {s.get_name() for s in t.get_symbols() if s.is_referenced() and s.is_global()}
        todo += t.get_children()
    return defined, used


def _is_test(src):
    "Does the cell test something (fastcore's test functions, or assert)?"
    tree = _parse(src)
    if tree is None: return False
    return any(isinstance(n, ast.Assert) or isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
               and n.func.id in _TEST_CALLS for n in ast.walk(tree))


def _check_calls(src, where):
    "The (reference, hide) of every `check(...)` call in a check cell, which must be string literals"
    tree = _parse(src)
    out = []
    for n in ast.walk(tree) if tree else ():
        if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == 'check'): continue
        kw = {k.arg: k.value for k in n.keywords}
        ref = n.args[2] if len(n.args) > 2 else kw.get('reference')
        hide = kw.get('hide')
        refs = [ref.value] if isinstance(ref, ast.Constant) and isinstance(ref.value, str) else []
        if hide is not None:
            if not (isinstance(hide, (ast.List, ast.Tuple)) and all(isinstance(e, ast.Constant) for e in hide.elts)):
                raise ExerciseError(f"{where}: `hide=` of check() must be a list of string literals (the grader hides "
                                    "those objects before the submission runs)")
            refs += [e.value for e in hide.elts]
        out.append(refs)
    return out


def _norm(src):
    return '\n'.join(l.rstrip() for l in src.strip().splitlines() if l.strip())


@dataclass
class Plan:
    "A lesson as the grader runs it: its exercises, its check and test cells, what to hide, the released sources"
    name: str
    path: Path
    nb: object                       # the lesson, marked
    found: dict                      # {exercise: Exercise}
    tests: dict                      # {exercise: [lesson cell index]}: the lesson's own test cells of the exercise
    hide: list                       # dotted names of the package's solutions
    released: dict                   # {lesson cell index: normalised source of the student version}
    entry: dict                      # {exercise: names its solution cells define}
    excluded: dict = field(default_factory=dict)   # {lesson cell index: why a test cell is not graded}

    def role(self, i):
        "('solution' | 'check' | 'test' | 'context', exercise) of lesson cell i"
        for name, ex in self.found.items():
            if i in ex.solutions: return 'solution', name
            if i in ex.checks: return 'check', name
        for name, cells in self.tests.items():
            if i in cells: return 'test', name
        return 'context', None

    def graded_tests(self):
        return {name: [i for i in cells if i not in self.excluded] for name, cells in self.tests.items()}


def plan(lesson_path):
    "The Plan of a lesson notebook"
    lesson_path = Path(lesson_path)
    nb = mark(read_nb(lesson_path))
    found = exercises(nb, lesson_path.name)
    hide = []
    for ex in found.values():
        for i in ex.checks:
            for refs in _check_calls(nb.cells[i].source, f"{lesson_path.name}, cell {i}"): hide += refs
    import dlcourse.exercises as dx
    hide = [h for h in dict.fromkeys(hide) if not isinstance(dx._resolve(h)[2], type)]
    entry = {name: set().union(*(_names(nb.cells[i].source)[0] for i in ex.solutions)) for name, ex in found.items()}
    order = {name: min(ex.solutions) for name, ex in found.items()}
    tests, bound = {name: [] for name in found}, {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != 'code': continue
        owner = next((n for n, ex in found.items() if i in ex.solutions or i in ex.checks), None)
        defined, used = _names(cell.source)
        if owner is not None:
            if i in found[owner].solutions: bound.update({n: owner for n in defined})
            continue
        if _is_test(cell.source) and not set(_directives(cell)) & set(_EXPORT):
            refs = {bound[n] for n in used - defined if n in bound}
            if refs: tests[max(refs, key=order.get)].append(i)
        for n in defined: bound.pop(n, None)          # rebound, e.g. `from dlcourse.optim import SGD`: no longer the student's
    student = student_version(read_nb(lesson_path))
    ids = {c.get('id'): c for c in student.cells}
    released = {i: _norm(ids[c.get('id')].source) for i, c in enumerate(nb.cells) if c.get('id') in ids}
    return Plan(lesson_path.stem, lesson_path, nb, found, tests, hide, released, entry)


def solved(plan):
    "The lesson as a submission: its own solutions, markers removed"
    nb = copy.deepcopy(plan.nb)
    for ex in plan.found.values():
        for i in ex.solutions: nb.cells[i].source = strip_solution_markers(nb.cells[i].source)
    return nb


def program(plan, sub, full=False):
    """The cells to run for a submission `sub`, in order: [{index, source, role, exercise}], and notes. The submission's
    own cells come in its order, except its check cells and the lesson's test cells, which are the lesson's, once
    each, after the cell that comes before them in the lesson. Without `full`, unmodified lesson cells run only if they
    import, are exported, or define something a cell that runs needs"""
    lesson = plan.nb
    by_id = {c.get('id'): i for i, c in enumerate(lesson.cells) if c.cell_type == 'code'}
    by_src = {}
    for i, c in enumerate(lesson.cells):
        if c.cell_type == 'code': by_src.setdefault(_norm(c.source), i); by_src.setdefault(plan.released.get(i), i)
    by_src.pop(None, None)
    graded = plan.graded_tests()
    tested = {i for cells in graded.values() for i in cells}
    seen_solutions = {name: 0 for name in plan.found}
    entries = []                                     # [lesson index or None, source, role, exercise, keep]
    for cell in sub.cells:
        if cell.cell_type != 'code': continue
        src, name = cell.source, exercise_name(cell.source)
        gid = cell.metadata.get('nbgrader', {}).get('grade_id', '') if isinstance(cell.metadata.get('nbgrader'), dict) else ''
        i = by_id.get(cell.get('id'))
        if i is None: i = by_src.get(_norm(src))
        role, owner = plan.role(i) if i is not None else ('context', None)
        if re.fullmatch(r'.+-check\d*', gid or '') or role in ('check', 'test') or \
                (i is None and name in plan.found and re.search(rf"\bcheck\(\s*['\"]{re.escape(name)}['\"]", src)):
            continue                                 # the lesson's own version runs instead
        if name in plan.found and role != 'solution':  # a solution cell that lost its id and metadata
            k = seen_solutions[name]
            sols = plan.found[name].solutions
            i, role, owner = sols[min(k, len(sols) - 1)], 'solution', name
        if role == 'solution': seen_solutions[owner] += 1
        if i is None: keep = True                    # a cell the student added
        elif role == 'solution': keep = True
        else:
            dirs = _directives(cell)
            keep = full or _imports_only(src) or any(d in _EXPORT for d in dirs) or _norm(src) != plan.released.get(i, _norm(src))
        entries.append([i, src, 'code', owner if role == 'solution' else None, keep])
    # the lesson's check and test cells, each after the last cell that comes before it in the lesson
    inserts = sorted([i for ex in plan.found.values() for i in ex.checks] + sorted(tested))
    for j in inserts:
        at = 0
        for k, e in enumerate(entries):
            if e[0] is not None and e[0] < j: at = k + 1
            elif e[0] is None and at == k and k > 0: at = k + 1      # cells the student added after it go first
        role, owner = plan.role(j)
        entries.insert(at, [j, lesson.cells[j].source, role, owner, True])
    # cells that define what a kept cell reads
    info = [_names(e[1]) for e in entries]
    todo = [k for k, e in enumerate(entries) if e[4]]
    while todo:                                      # the cell that last bound each name a kept cell reads, kept too
        k = todo.pop()
        for n in info[k][1] - info[k][0] - _BUILTINS:
            src_k = next((m for m in range(k - 1, -1, -1) if n in info[m][0]), None)
            if src_k is not None and not entries[src_k][4]:
                entries[src_k][4] = True
                todo.append(src_k)
    cells = [dict(index=(f"L{e[0]}" if e[2] in ('check', 'test') else f"S{k}"), source=e[1], role=e[2], exercise=e[3])
             for k, e in enumerate(entries) if e[4]]
    return cells


# -------------------------------------------------------------------------------------------------- running programs
@dataclass
class Run:
    "What a program's run left: its records, whether it finished, the tail of its output"
    records: list
    done: bool
    timed_out: bool
    log: str
    damaged: str = ''


def run_program(cells, mode, hide, sandbox='none', cell_timeout=60, timeout=600, limits=None, workdir=None):
    "Run `cells` with the harness in a sandbox of their own; Run"
    import exercise_sandbox as sb
    scratch = Path(tempfile.mkdtemp(prefix='dlcourse-grade-', dir=workdir))
    try:
        spec, results, log = scratch/'spec.json', scratch/'results.jsonl', scratch/'output.log'
        spec.write_text(json.dumps(dict(mode=mode, cells=cells, hide=hide, cell_timeout=cell_timeout, out=str(results))),
                        encoding='utf-8')
        results.touch()
        argv = [sys.executable, str(sb.HARNESS), str(spec)]
        cmd, preexec, env = sb.command(sandbox, scratch, argv, limits=limits or sb.Limits(cpu_s=timeout + 30))
        with open(scratch.parent/(scratch.name + '.log'), 'wb') as logf:
            proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=preexec)
            timed_out = False
            try: proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                try: os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError: pass
                proc.wait()
        logtext = _tail(scratch.parent/(scratch.name + '.log'))
        records, damaged = [], ''
        size = results.stat().st_size if results.exists() else 0
        if size > 256 << 20: damaged = f"the results file grew to {size} bytes"
        else:
            for line in (results.read_text(encoding='utf-8', errors='replace').splitlines() if size else []):
                try: rec = json.loads(line)
                except ValueError: damaged = 'a line of the results is not JSON'; break
                if not isinstance(rec, dict): damaged = 'a record of the results is not an object'; break
                records.append(rec)
        return Run(records, any(r.get('k') == 'done' for r in records), timed_out, logtext, damaged)
    finally:
        (scratch.parent/(scratch.name + '.log')).unlink(missing_ok=True)
        sb.cleanup(scratch)


def _tail(path, lines=4):
    try:
        with open(path, 'rb') as f:
            f.seek(max(0, f.seek(0, 2) - 4000))
            return ' / '.join(f.read().decode(errors='replace').strip().splitlines()[-lines:])
    except OSError: return ''


# -------------------------------------------------------------------------------------------- what the lesson gives
@dataclass
class Expected:
    "What the lesson's own code gives: its check calls with every case, and its test cells' values"
    checks: dict        # {lesson cell index: [{'meta': check record, 'cases': [case records]}]}
    values: dict        # {lesson cell index: [value records]}


def _expected_from(run):
    checks, values, current = {}, {}, None
    for r in run.records:
        if r.get('k') == 'check':
            current = {'meta': r, 'cases': []}
            checks.setdefault(int(r['cell'][1:]), []).append(current)
        elif r.get('k') == 'case': current['cases'].append(r)
        elif r.get('k') == 'value': values.setdefault(int(r['cell'][1:]), []).append(r)
    return Expected(checks, values)


def expected(plan, sandbox='none', cell_timeout=60, timeout=600, cache=None, workdir=None):
    """Run the lesson itself (in the sandbox, trusted code) and collect what it gives. A lesson test cell that raises
    there (it uses the package's solutions, which the sandbox hides) is not graded: it goes into plan.excluded and the
    lesson runs again without it. Cached in `cache` by the contents of the lesson, the package and the tools"""
    key = hashlib.sha256()
    for f in [plan.path, *sorted(Path(dlcourse_dir()).rglob('*.py')), Path(__file__), Path(__file__).with_name('exercise_harness.py')]:
        key.update(str(f).encode()); key.update(Path(f).read_bytes())
    key.update(sys.version.encode())
    cached = Path(cache)/f"{plan.name}-{key.hexdigest()[:20]}.json" if cache else None
    if cached is not None and cached.exists():
        data = json.loads(cached.read_text(encoding='utf-8'))
        plan.excluded = {int(k): v for k, v in data['excluded'].items()}
        return Expected({int(k): v for k, v in data['checks'].items()}, {int(k): v for k, v in data['values'].items()})
    for attempt in range(3):
        run = run_program(program(plan, solved(plan)), 'expect', plan.hide, sandbox, cell_timeout, timeout, workdir=workdir)
        errors = {r['cell']: r['error'] for r in run.records if r.get('k') == 'cell' and r.get('error')}
        tests = {i for cells in plan.graded_tests().values() for i in cells}
        bad_tests = {int(c[1:]): e for c, e in errors.items() if c.startswith('L') and int(c[1:]) in tests}
        others = {c: e for c, e in errors.items() if not (c.startswith('L') and int(c[1:]) in tests)}
        if others or not run.done:
            what = '; '.join(f"cell {c}: {e['type']}: {e['message'][:200]}" for c, e in others.items()) or run.log
            raise ExerciseError(f"{plan.path.name}: the lesson itself does not run in the grader: {what}")
        slow = {int(r['cell'][1:]): r['cpu'] for r in run.records if r.get('k') == 'cell' and r['cell'].startswith('L')
                and int(r['cell'][1:]) in tests and r.get('cpu', 0) > TEST_BUDGET and int(r['cell'][1:]) not in bad_tests}
        if not bad_tests and not slow: break
        plan.excluded.update({i: f"raises in the grader's run ({e['type']}: {e['message'][:100]})" for i, e in bad_tests.items()})
        plan.excluded.update({i: f"takes {t:.1f} s of CPU time, more than the {TEST_BUDGET} s a graded test may" for i, t in slow.items()})
    exp = _expected_from(run)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(cached, json.dumps(dict(excluded=plan.excluded, checks=exp.checks, values=exp.values)))
    return exp


def dlcourse_dir():
    import dlcourse
    return Path(dlcourse.__file__).resolve().parent


def _write_atomic(path, text):
    "Write `text` to `path` through a temporary file in the same folder, so that a reader never sees half of it"
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8', newline='') as f: f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------------------- verdicts
def _value(d):
    from dlcourse.exercises import decode
    if isinstance(d, dict) and 'repr' in d and len(d) == 2: return _Repr(d['repr'])
    return decode(d)


class _Repr(str):
    "A value that was not plain data, by its repr"


def _differs(got, exp, rtol=1e-6, atol=1e-9, names=None):
    from dlcourse.exercises import _difference
    if isinstance(exp, _Repr) or isinstance(got, _Repr):
        return None if str(got) == str(exp) and type(got) is type(exp) else "the values differ"
    return _difference(got, exp, rtol, atol, names)


def _verdict_check(plan, name, call, case_recs, exp):
    "(status, message) of one check call: its student records against the lesson's"
    from dlcourse.exercises import _show, _is_numeric
    meta = exp['meta']
    hint = meta.get('hint') or ''
    with_hint = lambda h: f"\n  hint: {h}" if h else ''
    if call.get('package'):
        return 'failed', (f"`{call['student']}` here is {call['package']}, the package's solution: run the cell where "
                          "you define your own (and do not import it from dlcourse)")
    for e in exp['cases']:
        s = case_recs.get(e['case'])
        if s is None: return None
        if s.get('fp') != e['fp']:
            return 'failed', (f"the check of {e['call_text']} ran on other inputs than the lesson's: a cell of yours "
                              "changed a variable the check uses (run the notebook from the top)")
        if s.get('not_done'):
            return 'not done', (f"not done yet: replace `raise NotImplementedError()` in the cells marked "
                                f"`#| exercise {name}` with your code." + with_hint(hint))
        if s.get('hidden') or '_hidden_stub()' in s.get('raised', {}).get('message', ''):   # or its code, kept and called
            return 'failed', (f"{e['call_text']} calls the package's own solution ({', '.join(meta['hide'])}): the "
                              "exercise is to write it yourself")
        want = e['expected']
        mistakes = list(zip(meta['mistakes'], e['mistakes']))
        if 'raised' in s:
            if 'raised' in want and s['raised']['type'] == want['raised']['type']: continue
            shown = '' if 'raised' in want else f"\n  expected: {_show(_value(want['value']))}"
            known = [h for h, m in mistakes if isinstance(m, dict) and m.get('raised') == s['raised']['type']]
            return 'failed', (f"{e['call_text']} raised {s['raised']['type']}: {s['raised']['message']}{shown}"
                              + with_hint(known[0] if known else hint))
        got = _value(s['got'])
        if 'raised' in want:
            return 'failed', (f"{e['call_text']} returned {_show(got)}, expected it to raise {want['raised']['type']} "
                              f"({want['raised']['message']})" + with_hint(hint))
        expv, names = _value(want['value']), meta.get('names')
        diff = _differs(got, expv, meta['rtol'], meta['atol'], names)
        if diff is None: continue
        known = [h for h, m in mistakes if m is not None and not (isinstance(m, dict) and 'raised' in m)
                 and _differs(got, _value(m), meta['rtol'], meta['atol'], names) is None]
        shown = (got, expv)
        if isinstance(expv, tuple) and isinstance(got, tuple) and len(got) == len(expv):
            shown = next(((g, x) for g, x in zip(got, expv) if _differs(g, x, meta['rtol'], meta['atol']) is not None), shown)
        itemised = isinstance(expv, list) and not _is_numeric(expv)
        detail = '' if itemised else f"\n  expected: {_show(shown[1])}\n  got:      {_show(shown[0])}"
        return 'failed', f"wrong result for {e['call_text']}\n  {diff}{detail}" + with_hint(known[0] if known else hint)
    return 'passed', ''


def _test_line(plan, i, line):
    lines = plan.nb.cells[i].source.splitlines()
    return lines[line - 1].strip() if 0 < line <= len(lines) else ''


def _verdict_test(plan, name, i, got, exp, cell_error):
    "(status, message) of a lesson test cell: the values its tests were given, against the lesson's"
    from dlcourse.exercises import _show
    where = f"the lesson's test in cell {i}"
    tip = ("\n  hint: this test is one of the lesson's own, after the exercise: run that cell in your notebook; it "
           "tries your code on other arguments than the check")
    for n, e in enumerate(exp):
        g = got[n] if n < len(got) else None
        if g is None or g.get('what') != e['what'] or g.get('line') != e['line']:
            if cell_error: return _cell_error_verdict(plan, name, f"{where}", cell_error)
            return 'failed', f"{where} stopped before `{_test_line(plan, i, e['line'])}`" + tip
        for gv, ev in zip(g['values'], e['values']):
            gv, ev = _value(gv), _value(ev)
            atol = float(_value(e['eps'])) if e['what'] == 'test_close' and 'eps' in e else 1e-9
            if _differs(gv, ev, 1e-7, atol) is not None:
                return 'failed', (f"{where}, line {e['line']}: `{_test_line(plan, i, e['line'])}`\n"
                                  f"  {_differs(gv, ev, 1e-7, atol)}\n  the lesson's code gives: {_show(ev)}\n"
                                  f"  yours gives:             {_show(gv)}" + tip)
    if cell_error: return _cell_error_verdict(plan, name, where, cell_error)
    return 'passed', ''


def _cell_error_verdict(plan, name, where, err):
    if err['type'] == 'CellTimeout': return 'timeout', f"{where} was interrupted after the cell time limit"
    if err['type'] == 'NotImplementedError':
        mine = any(w.split('.')[0] in plan.entry[name] or w in plan.entry[name] for w in err.get('where', []))
        if mine or not err.get('where'):
            return 'not done', (f"not done yet: replace `raise NotImplementedError()` in the cells marked "
                                f"`#| exercise {name}` with your code.")
        return 'blocked', ''
    return 'error', f"{where} raised {err['type']}: {err['message']}"


def verdicts(plan, exp, run):
    "{exercise: (points, max_points, status, message)} of a submission's run against the lesson's"
    recs = run.records
    started = {r['cell'] for r in recs if r.get('k') == 'start'}
    errors = {r['cell']: r['error'] for r in recs if r.get('k') == 'cell'}
    calls = {}
    cases = {}
    for r in recs:
        if r.get('k') == 'check': calls.setdefault(r.get('cell'), []).append(r)
        elif r.get('k') == 'case': cases.setdefault((r.get('exercise'), r.get('call')), {})[r.get('case')] = r
    values = {}
    for r in recs:
        if r.get('k') == 'value': values.setdefault(r.get('cell'), []).append(r)
    last = next((r['cell'] for r in reversed(recs) if r.get('k') == 'start'), None)
    dead = None
    if not run.done:
        if run.damaged: dead = ('error', f"the graded run's results are damaged ({run.damaged})")
        elif run.timed_out: dead = ('timeout', "the notebook ran longer than the time limit and was stopped")
        else: dead = ('crashed', f"the process running the notebook died (in cell {last} of the graded run): "
                                 f"{run.log[-300:] or 'no output'}")
    graded = plan.graded_tests()
    out = {}
    for name, ex in plan.found.items():
        got = []
        for n, i in enumerate(ex.checks):
            key = f"L{i}"
            parts = []
            if key not in started:
                parts.append(dead or ('error', f"the check cell did not run: {run.log[-300:]}"))
            else:
                mine = calls.get(key, [])
                err = errors.get(key)
                for k, e in enumerate(exp.checks.get(i, [])):
                    call = mine[k] if k < len(mine) else None
                    v = None if call is None else _verdict_check(plan, name, call, cases.get((name, call['call']), {}), e)
                    if v is None:
                        if err: v = _cell_error_verdict(plan, name, 'the check cell', err)
                        elif key not in errors and dead: v = dead
                        else: v = ('failed', "the check did not run to its end: a cell of yours redefines `check`, or "
                                              "what it uses")
                        if v[0] == 'blocked': v = ('not done', 'another exercise this one needs is not done yet')
                    parts.append(v)
                    if v[0] != 'passed': break
                if err and all(p[0] == 'passed' for p in parts):
                    parts.append(_cell_error_verdict(plan, name, 'the check cell', err))
                if n == len(ex.checks) - 1 and all(p[0] == 'passed' for p in parts):
                    for t in graded[name]:
                        tk = f"L{t}"
                        if tk not in started: v = dead or ('error', "the lesson's test did not run")
                        else: v = _verdict_test(plan, name, t, values.get(tk, []), exp.values.get(t, []), errors.get(tk))
                        if v[0] == 'blocked': continue
                        parts.append(v)
                        if v[0] != 'passed': break
            bad = next((p for p in parts if p[0] != 'passed'), None)
            got.append(bad or ('passed', ''))
        points = sum(s == 'passed' for s, _ in got)
        status, message = max(got, key=lambda sm: STATUS_ORDER.index(sm[0]))
        out[name] = (points, len(ex.checks), status, f"Exercise {name}: {message}" if message else '')
    return out


# ------------------------------------------------------------------------------------------------------------ grade
class Grader:
    "Grades submissions of the lessons in `nbs`; the lessons' own results are computed once per lesson"
    def __init__(self, nbs=NBS, sandbox='auto', cell_timeout=60, timeout=600, cache=None, full=False, workdir=None,
                 log=print):
        import exercise_sandbox as sb
        self.sandbox = sb.available(sandbox)
        if self.sandbox == 'none': log("warning: grading without a sandbox (--no-sandbox): submissions can read and "
                                       "write your files")
        self.nbs, self.cell_timeout, self.timeout, self.full = Path(nbs), cell_timeout, timeout, full
        self.cache, self.workdir, self.log = cache, workdir, log
        self.plans, self.expected = {}, {}
        self.lock = threading.Lock()

    def lesson(self, path):
        path = Path(path)
        with self.lock:
            if path not in self.plans:
                p = plan(path)
                # the lesson is trusted: the time limits are the submissions' or more, never less
                self.expected[path] = expected(p, self.sandbox, max(self.cell_timeout, 300), max(self.timeout, 1800),
                                               self.cache, self.workdir)
                self.plans[path] = p
            return self.plans[path], self.expected[path]

    def grade_one(self, submission_path, lesson_path):
        "{exercise: (points, max_points, status, message)} of one submitted notebook"
        p, exp = self.lesson(lesson_path)
        try: sub = read_nb(submission_path)
        except Exception as e:
            return {name: (0, len(ex.checks), 'error', f"Exercise {name}: the notebook cannot be read: {type(e).__name__}: {e}")
                    for name, ex in p.found.items()}
        cells = program(p, sub, self.full)
        run = run_program(cells, 'record', p.hide, self.sandbox, self.cell_timeout, self.timeout, workdir=self.workdir)
        return verdicts(p, exp, run)


def grade_one(submission_path, lesson_path, full=False, cell_timeout=60, timeout=600, sandbox='auto', cache=None):
    "{exercise: (points, max_points, status, message)} of one submitted notebook"
    return Grader(Path(lesson_path).parent, sandbox, cell_timeout, timeout, cache, full, log=lambda *a: None
                  ).grade_one(submission_path, lesson_path)


_COPY = re.compile(r'(?i)^(?:copy of )?(.+?)(?:[-_ ]?\(?copy\d*\)?|[-_ ]copy[-_ ]?\d*|[ _-]?\(\d+\)|[ _-]v\d+|[-_ ]final)*$')


def _lesson_of(path, known):
    "(lesson, how) a notebook belongs to: by its name, by its name less a copy's suffix, or by its exercises"
    stem = Path(path).stem
    if stem in known: return stem, 'name'
    m = _COPY.match(stem)
    if m and m.group(1) in known: return m.group(1), 'renamed'
    try:
        names = {exercise_name(c.source) for c in read_nb(path).cells if c.cell_type == 'code'} - {None}
    except Exception: return None, None
    for lesson, exs in known.items():
        if names and names <= set(exs): return lesson, 'contents'
    return None, None


def submissions(folder, known, exs=None):
    """{student: {lesson: path}} of every student folder in `folder`, and {student: [notes]}. A lesson's notebook is
    found by its name, a copy's name (`01_sigmoid_neuron-Copy1.ipynb`) or its exercises; of several, the one highest
    in the student's folder, with the exact name, most recently changed is graded, and the others are noted"""
    exs = exs or {n: list(exercises(read_nb(p), p.name)) for n, p in known.items()}
    found, notes = {}, {}
    for student in sorted(p for p in Path(folder).iterdir() if p.is_dir() and p.name[0] not in '._'):
        cand, notes[student.name] = {}, []
        for path in sorted(student.rglob('*.ipynb')):
            if '.ipynb_checkpoints' in path.parts or any(part.startswith('.') for part in path.relative_to(student).parts): continue
            lesson, how = _lesson_of(path, exs)
            if lesson is None:
                notes[student.name].append(f"{path.relative_to(student)}: not a notebook of the graded lessons, ignored")
                continue
            cand.setdefault(lesson, []).append((len(path.relative_to(student).parts), how != 'name', -path.stat().st_mtime, path, how))
        found[student.name] = {}
        for lesson, paths in cand.items():
            paths.sort(key=lambda t: t[:3])
            best = paths[0]
            found[student.name][lesson] = best[3]
            rel = lambda p: str(p.relative_to(student))
            if best[4] != 'name': notes[student.name].append(f"{rel(best[3])}: graded as {lesson}.ipynb ({best[4]})")
            for other in paths[1:]:
                notes[student.name].append(f"{rel(other[3])}: another copy of {lesson}, not graded (graded: {rel(best[3])})")
    return found, notes


def grade(folder, out=None, nbs=NBS, full=False, cell_timeout=60, timeout=600, jobs=2, log=print, sandbox='auto',
          cache=None, feedback=None, lessons_=None):
    """Grade every submission in `folder`; write the table to `out` (CSV) with the totals beside it
    (OUT-totals.csv) and a feedback page per student into `feedback` (default: OUT's folder/feedback) if `out` is
    given; return the table's rows as dicts"""
    known = lessons(nbs)
    if lessons_: known = {n: p for n, p in known.items() if n in lessons_}
    exs = {n: list(exercises(read_nb(p), p.name)) for n, p in known.items()}
    subs, notes = submissions(folder, known, exs)
    graded_lessons = [n for n in known if any(n in s for s in subs.values())]
    grader = Grader(nbs, sandbox, cell_timeout, timeout, cache, full, log=log)
    for n in graded_lessons: grader.lesson(known[n])
    todo = [(s, n, subs[s][n]) for s in subs for n in graded_lessons if n in subs[s]]

    def one(item):
        student, lesson, path = item
        t0 = time.monotonic()
        res = grader.grade_one(path, known[lesson])
        log(f"graded {student}/{lesson}: {sum(r[0] for r in res.values())}/{sum(r[1] for r in res.values())} "
            f"points ({time.monotonic() - t0:.1f} s)")
        return (student, lesson), res

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool: results = dict(pool.map(one, todo))
    rows = []
    for student in subs:
        for lesson in graded_lessons:
            res = results.get((student, lesson))
            for name in exs[lesson]:
                mp = len(exercises(grader.plans[known[lesson]].nb)[name].checks)
                points, max_points, status, message = (res[name] if res else
                    (0, mp, 'missing', f"no {lesson}.ipynb in the submission"))
                rows.append(dict(student=student, notebook=lesson, exercise=name, points=points,
                                 max_points=max_points, status=status, message=message))
    if out is not None:
        out = Path(out)
        write_csv(out, rows, CSV_COLUMNS)
        write_csv(out.with_name(out.stem + '-totals.csv'), totals(rows), TOTAL_COLUMNS)
        fb = Path(feedback) if feedback else out.parent/'feedback'
        fb.mkdir(parents=True, exist_ok=True)
        for student in subs:
            _write_atomic(fb/f"{student}.md", feedback_page(student, [r for r in rows if r['student'] == student],
                                                            notes.get(student, [])))
    return rows


TOTAL_COLUMNS = ('student', 'points', 'max_points', 'percent', 'passed', 'exercises')


def totals(rows):
    "One row per student: points, max points, percent, exercises passed"
    out = {}
    for r in rows:
        t = out.setdefault(r['student'], dict(student=r['student'], points=0, max_points=0, passed=0, exercises=0))
        t['points'] += r['points']; t['max_points'] += r['max_points']
        t['passed'] += r['status'] == 'passed'; t['exercises'] += 1
    for t in out.values(): t['percent'] = round(100 * t['points'] / t['max_points'], 1) if t['max_points'] else 0.0
    return [dict((k, t[k]) for k in TOTAL_COLUMNS) for t in out.values()]


def write_csv(path, rows, columns):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator='\r\n')
    w.writeheader(); w.writerows(rows)
    _write_atomic(path, buf.getvalue())


def feedback_page(student, rows, notes=()):
    "A student's feedback as Markdown: the points, then every exercise with its status and the check's message"
    pts, mx = sum(r['points'] for r in rows), sum(r['max_points'] for r in rows)
    lines = [f"# Feedback for {student}", '', f"**{pts} of {mx} points.**", '', '| notebook | exercise | points | status |',
             '|---|---|---|---|']
    lines += [f"| {r['notebook']} | {r['exercise']} | {r['points']}/{r['max_points']} | {r['status']} |" for r in rows]
    for r in rows:
        if r['status'] == 'passed': continue
        lines += ['', f"## {r['notebook']}: {r['exercise']} ({r['status']})", '', '```', r['message'] or r['status'], '```']
    if notes: lines += ['', '## Notes on the submitted files', ''] + [f"- {n}" for n in notes]
    return '\n'.join(lines) + '\n'


def summary(rows):
    "The table as text: one line per student, one column per exercise, with the points in total"
    cols = list(dict.fromkeys((r['notebook'], r['exercise']) for r in rows))
    by = {(r['student'], r['notebook'], r['exercise']): r for r in rows}
    students = list(dict.fromkeys(r['student'] for r in rows))
    width = max([len('student')] + [len(s) for s in students])
    head = f"{'student':{width}}  " + '  '.join(f"{e:>{max(len(e), 8)}}" for _, e in cols) + '  points'
    lines = [head]
    for s in students:
        cells = [by[(s, *c)]['status'] for c in cols]
        pts = sum(by[(s, *c)]['points'] for c in cols), sum(by[(s, *c)]['max_points'] for c in cols)
        lines.append(f"{s:{width}}  " + '  '.join(f"{v:>{max(len(e), 8)}}" for v, (_, e) in zip(cells, cols))
                     + f"  {pts[0]}/{pts[1]}")
    return '\n'.join(lines)


# -------------------------------------------------------------------------------------------------------------- main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog='tools/exercises', description=__doc__.split('\n\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    sub.add_parser('list', help='the marked exercises, by lesson')
    b = sub.add_parser('build', help='write the student notebooks')
    b.add_argument('lessons', nargs='*', help='lesson names (default: every lesson with exercises)')
    b.add_argument('--out', default=str(ROOT/'exercises'), help='output folder (default: exercises/)')
    g = sub.add_parser('grade', help='grade a folder of submissions: SUBMISSIONS/<student>/<lesson>.ipynb')
    g.add_argument('submissions')
    g.add_argument('--out', default='grades.csv', help='the CSV table to write (default: grades.csv)')
    g.add_argument('--full', action='store_true', help='run every cell of a submission, not only the graded ones')
    g.add_argument('--cell-timeout', type=int, default=60, help='seconds one cell may run (default 60)')
    g.add_argument('--timeout', type=int, default=600, help='seconds one notebook may run (default 600)')
    g.add_argument('--jobs', type=int, default=2, help='submissions graded at once (default 2)')
    g.add_argument('--sandbox', choices=('auto', 'bwrap', 'unshare', 'none'), default='auto',
                   help='how to isolate each submission (default auto: bubblewrap, else unshare as root)')
    g.add_argument('--no-sandbox', dest='sandbox', action='store_const', const='none',
                   help='grade without isolation (a submission can then read and write your files): only for '
                        'submissions you trust, where no sandbox is available')
    g.add_argument('--feedback', help="folder for the students' feedback pages (default: feedback/ beside --out)")
    args = ap.parse_args(argv)
    import exercise_sandbox as sb
    try:
        if args.cmd == 'list':
            for name, path in lessons().items():
                print(f"{name:20s} " + ', '.join(exercises(read_nb(path), path.name)))
        elif args.cmd == 'build':
            for p in build(args.lessons, args.out): print(f"wrote {p}")
        else:
            if not Path(args.submissions).is_dir(): ap.error(f"{args.submissions} is not a folder")
            rows = grade(args.submissions, args.out, full=args.full, cell_timeout=args.cell_timeout,
                         timeout=args.timeout, jobs=args.jobs, sandbox=args.sandbox, feedback=args.feedback,
                         log=lambda m: print(m, file=sys.stderr))
            print(summary(rows))
            out = Path(args.out)
            print(f"wrote {out}: {len(rows)} rows, {out.with_name(out.stem + '-totals.csv')} and the feedback pages")
    except (ExerciseError, sb.SandboxUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
