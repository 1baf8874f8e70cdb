"""Student notebooks made from the lessons, and grading of submitted ones (nbs/11_exercises.ipynb explains the workflow).

    tools/exercises list                                  the marked exercises, by lesson
    tools/exercises build [LESSON ...] [--out exercises]  student notebooks: solutions replaced by stubs, checks kept
    tools/exercises grade SUBMISSIONS [--out grades.csv] [--full] [--cell-timeout 60] [--timeout 600] [--jobs 2]

The instructor marks an exercise in a lesson with nbgrader's solution markers inside cells that carry `#| exercise NAME`,
and adds a check cell with the same directive (`dlcourse.exercises` reads the markers). `build` gives the
cells nbgrader's metadata and runs nbgrader's own preprocessors (ClearSolutions, ClearHiddenTests, ClearOutput, LockCells,
ComputeChecksums). `grade` runs every submission in a child process of its own, with nbclient and a fresh kernel, the
lesson's check cells put back in place of the submitted ones, and writes one CSV row per student and exercise; a
submission that runs too long or kills its kernel gets `timeout` or `crashed` rows, never a crashed grader.
"""
import argparse
import ast
import copy
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from dlcourse.exercises import exercise_name, solution_regions

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
STATUS_ORDER = ('passed', 'failed', 'not done', 'error', 'timeout', 'crashed', 'missing')
CSV_COLUMNS = ('student', 'notebook', 'exercise', 'points', 'max_points', 'status', 'message')
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


def student_version(nb):
    "The student notebook of an instructor notebook `nb`: nbgrader's stubs for every solution region, outputs cleared"
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions, ComputeChecksums, LockCells
    found = exercises(nb)
    nb = mark(nb)
    nb.metadata.pop('widgets', None)
    for cell in nb.cells: cell.metadata.pop('execution', None)      # nbclient's timings of the lesson's own run
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


# ------------------------------------------------------------------------------------------------------------- grade
def _imports_only(src):
    "True if the code is nothing but import statements (after its directives)"
    try: tree = ast.parse(src)
    except SyntaxError: return False
    return all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in tree.body)


def runnable(submission, lesson, full=False):
    """The notebook to run for a submission: every check cell replaced by the lesson's own; without `full`, only the
    import cells, the exported cells, the exercises' cells and the cells the student added. Returns the notebook and
    {cell index: (exercise, grade id)} of its check cells, and the exercises whose check cell is missing"""
    lesson = mark(lesson)
    sub = copy.deepcopy(submission)
    if not any('nbgrader' in c.metadata for c in sub.cells): sub = mark(sub)   # e.g. the lesson itself
    checks = {c.metadata['nbgrader']['grade_id']: c for c in lesson.cells
              if c.metadata.get('nbgrader', {}).get('grade')}
    owner = {gid: exercise_name(c.source) for gid, c in checks.items()}
    lesson_ids = {c.get('id') for c in lesson.cells}
    cells, where = [], {}
    for cell in sub.cells:
        if cell.cell_type != 'code': continue
        gid = cell.metadata.get('nbgrader', {}).get('grade_id')
        if gid in checks:
            cell = copy.deepcopy(checks[gid])
            where[len(cells)] = (owner[gid], gid)
        elif not full:
            dirs = _directives(cell)
            keep = (_imports_only(cell.source) or any(d in _EXPORT for d in dirs)
                    or 'exercise' in dirs or cell.get('id') not in lesson_ids)
            if not keep: continue
        cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    nb = copy.deepcopy(sub)
    nb.cells = cells
    missing = {owner[g] for g in checks} - {e for e, _ in where.values()}
    return nb, where, missing


def _status(outputs):
    "(status, message) of an executed check cell"
    for o in outputs:
        if o.get('output_type') != 'error': continue
        ename, evalue = o.get('ename', ''), o.get('evalue', '')
        if ename == 'ExerciseNotDone': return 'not done', evalue
        if ename == 'ExerciseFailed': return 'failed', evalue
        if ename == 'KeyboardInterrupt': return 'timeout', 'the check was interrupted after the cell time limit'
        return 'error', f"{ename}: {evalue}"
    return 'passed', ''


def _worker(nb_path, results_path, cell_timeout, cwd):
    "Child process: run the notebook cell by cell, appending one JSON line per check cell (and the kernel's pid)"
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    spec = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    nb = nbformat.reads(json.dumps(spec['notebook']), as_version=4)
    where = {int(k): v for k, v in spec['checks'].items()}
    client = NotebookClient(nb, timeout=cell_timeout, interrupt_on_timeout=True, allow_errors=True,
                            kernel_name='python3', resources={'metadata': {'path': cwd}})
    with open(results_path, 'a', encoding='utf-8') as res, client.setup_kernel():
        pid = getattr(client.km.provisioner, 'pid', None)
        res.write(json.dumps({'kernel_pid': pid}) + '\n'); res.flush()
        for i, cell in enumerate(nb.cells):
            t0 = time.monotonic()
            try: client.execute_cell(cell, i)
            except DeadKernelError:
                res.write(json.dumps({'crashed': i, 'exercise': where.get(i, [None])[0]}) + '\n')
                return
            if i in where:
                status, message = _status(cell.outputs)
                if status != 'passed' and time.monotonic() - t0 >= cell_timeout:
                    status, message = 'timeout', f"the check ran longer than {cell_timeout} s and was interrupted"
                res.write(json.dumps({'cell': i, 'exercise': where[i][0], 'grade_id': where[i][1], 'status': status,
                                      'message': message}) + '\n')
                res.flush()


def _kill_kernel(pid):
    "Kill the kernel our child started (it runs in a session of its own), if it is still that kernel"
    try:
        if 'ipykernel' not in Path(f'/proc/{pid}/cmdline').read_bytes().decode(errors='replace'): return
        os.killpg(pid, signal.SIGKILL)
    except (OSError, ValueError): pass


def grade_one(submission_path, lesson_path, full=False, cell_timeout=60, timeout=600):
    "{exercise: (points, max_points, status, message)} of one submitted notebook"
    lesson = read_nb(lesson_path)
    found = exercises(lesson, lesson_path.name)
    max_points = {name: len(ex.checks) for name, ex in found.items()}
    try:
        nb, where, missing = runnable(read_nb(submission_path), lesson, full)
    except Exception as e:   # not a notebook, or its markers are broken
        return {name: (0, max_points[name], 'error', f"the notebook cannot be read: {type(e).__name__}: {e}") for name in found}
    with tempfile.TemporaryDirectory(prefix='dlcourse-grade-') as tmp:
        spec, results, cwd = Path(tmp)/'run.json', Path(tmp)/'results.jsonl', Path(tmp)/'cwd'
        cwd.mkdir()
        spec.write_text(json.dumps({'notebook': nb, 'checks': where}), encoding='utf-8')
        env = dict(os.environ, MPLBACKEND='Agg', PYTHONUNBUFFERED='1')
        cmd = [sys.executable, str(Path(__file__).resolve()), '_run', str(spec), str(results), str(cell_timeout), str(cwd)]
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        timed_out = False
        try: log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            log, _ = proc.communicate()
        lines = [json.loads(l) for l in results.read_text(encoding='utf-8').splitlines()] if results.exists() else []
        for rec in lines:
            if rec.get('kernel_pid'): _kill_kernel(rec['kernel_pid'])
    cells = {name: [] for name in found}
    crashed = next((r for r in lines if 'crashed' in r), None)
    for rec in lines:
        if 'status' in rec: cells[rec['exercise']].append((rec['status'], rec['message']))
    out = {}
    for name in found:
        got = cells[name]
        if len(got) < max_points[name]:         # some check cells never ran
            if name in missing: got.append(('missing', "the check cell is missing from the submission"))
            elif timed_out: got.append(('timeout', f"the notebook ran longer than {timeout} s and was stopped"))
            elif crashed is not None:
                at = f" in the cell of exercise {crashed['exercise']}" if crashed.get('exercise') else ''
                got.append(('crashed', f"the kernel died{at} (cell {crashed['crashed']} of the graded run)"))
            else:
                tail = (log or b'').decode(errors='replace').strip().splitlines()[-3:]
                got.append(('error', 'the notebook could not be run: ' + ' / '.join(tail)))
        points = sum(s == 'passed' for s, _ in got)
        status, message = max(got, key=lambda sm: STATUS_ORDER.index(sm[0]))
        out[name] = (points, max_points[name], status, message)
    return out


def submissions(folder, known):
    "[(student, lesson, path)]: every notebook SUBMISSIONS/<student>/**/<lesson>.ipynb of a lesson in `known`"
    found = []
    for student in sorted(p for p in Path(folder).iterdir() if p.is_dir() and p.name[0] not in '._'):
        for path in sorted(student.rglob('*.ipynb')):
            if '.ipynb_checkpoints' in path.parts or path.stem not in known: continue
            found.append((student.name, path.stem, path))
    return found


def grade(folder, out=None, nbs=NBS, full=False, cell_timeout=60, timeout=600, jobs=2, log=print):
    "Grade every submission in `folder`; write the table to `out` (CSV) if given; return its rows as dicts"
    known = lessons(nbs)
    subs = submissions(folder, known)
    students = sorted({s for s, _, _ in subs})
    graded_lessons = [n for n in known if any(l == n for _, l, _ in subs)]

    def one(item):
        student, lesson, path = item
        t0 = time.monotonic()
        res = grade_one(path, known[lesson], full, cell_timeout, timeout)
        log(f"graded {student}/{lesson}: {sum(r[0] for r in res.values())}/{sum(r[1] for r in res.values())} "
            f"points ({time.monotonic() - t0:.0f} s)")
        return (student, lesson), res

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool: results = dict(pool.map(one, subs))
    rows = []
    for student in students:
        for lesson in graded_lessons:
            res = results.get((student, lesson))
            for name, ex in exercises(read_nb(known[lesson])).items():
                points, max_points, status, message = (res[name] if res else
                    (0, len(ex.checks), 'missing', f"no {lesson}.ipynb in the submission"))
                rows.append(dict(student=student, notebook=lesson, exercise=name, points=points,
                                 max_points=max_points, status=status, message=message))
    if out is not None:
        with open(out, 'w', newline='', encoding='utf-8') as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            w.writeheader(); w.writerows(rows)
    return rows


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
    if argv[:1] == ['_run']:                      # the child process of `grade`
        _, spec, results, cell_timeout, cwd = argv
        _worker(spec, results, int(cell_timeout), cwd)
        return 0
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
    args = ap.parse_args(argv)
    try:
        if args.cmd == 'list':
            for name, path in lessons().items():
                print(f"{name:20s} " + ', '.join(exercises(read_nb(path), path.name)))
        elif args.cmd == 'build':
            for p in build(args.lessons, args.out): print(f"wrote {p}")
        else:
            if not Path(args.submissions).is_dir(): ap.error(f"{args.submissions} is not a folder")
            rows = grade(args.submissions, args.out, full=args.full, cell_timeout=args.cell_timeout,
                         timeout=args.timeout, jobs=args.jobs)
            print(summary(rows))
            print(f"wrote {args.out}: {len(rows)} rows")
    except ExerciseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
