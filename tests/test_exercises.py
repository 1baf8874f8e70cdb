"""Exercises made from the lessons (nbs/11_exercises.ipynb, tools/exercises): markers, student notebooks, checks, grader.

Every test runs over the lessons that have marked exercises, so a lesson is covered as soon as it is marked. The graded
runs execute only what grading executes (import cells, exported cells, exercise cells: `tools/exercises grade` without
`--full`), so the slow lessons (07 trains for a while) cost a few seconds each; one lesson also runs top to bottom.
"""
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import require

nbformat = require('nbformat')           # tools/exercises reads and writes notebooks with it
import exercise_tool as et  # noqa: E402
from dlcourse.exercises import SOLUTION_BEGIN, SOLUTION_END, exercise_name, solution_regions, strip_solution_markers
from exercises_planted import PLANTED

ROOT = Path(__file__).resolve().parents[1]

LESSONS = et.lessons()
EXERCISES = {lesson: list(et.exercises(et.read_nb(path), path.name)) for lesson, path in LESSONS.items()}
CELL_TIMEOUT = 20


# ------------------------------------------------------------------------------------------------------------ helpers
def plant(source, replacements, used):
    "`source` with those (solution text, wrong text) replaced that its solution regions hold; `used` counts them"
    regions = '\n'.join(line for r in solution_regions(source) for line in r)
    for old, new in replacements:
        n = regions.count(old)
        if not n: continue
        assert n == 1 and source.count(old) == 1, f"planted text {old!r} occurs more than once: see tests/exercises_planted.py"
        used[old] = used.get(old, 0) + 1
        source = source.replace(old, new)
    return source


def fill(student, lesson, planted=(), keep_stub=()):
    """A submission: the student notebook with every solution cell written as in the lesson (markers gone), with the
    planted mistakes of the exercises in `planted`, and the stubs of the exercises in `keep_stub` left as they are"""
    marked = et.mark(lesson)
    source = {c.metadata['nbgrader']['grade_id']: c.source for c in marked.cells
              if c.metadata.get('nbgrader', {}).get('solution')}
    nb = nbformat.from_dict(json.loads(json.dumps(student)))
    used = {}
    for cell in nb.cells:
        gid = cell.metadata.get('nbgrader', {}).get('grade_id')
        if gid not in source: continue
        name = exercise_name(cell.source)
        if name in keep_stub: continue
        src = source[gid]
        if name in planted: src = plant(src, PLANTED[name][0], used)
        cell.source = strip_solution_markers(src)
    for name in planted:
        for old, _ in PLANTED[name][0]:
            assert used.get(old) == 1, f"planted text {old!r} of {name} is not in its solution regions: see tests/exercises_planted.py"
    return nb


def edit_cell(nb, grade_id, edit):
    for cell in nb.cells:
        if cell.metadata.get('nbgrader', {}).get('grade_id') == grade_id: cell.source = edit(cell.source)
    return nb


def strings(obj):
    "Every string in a JSON-like structure (sources, outputs, metadata)"
    if isinstance(obj, str): yield obj
    elif isinstance(obj, dict):
        for v in obj.values(): yield from strings(v)
    elif isinstance(obj, list):
        for v in obj: yield from strings(v)


def solution_lines(lesson):
    """Lines of code that only the solution regions contain (stripped; comments, lines found elsewhere in the lesson and
    bare syntax such as `else:` left out: they give nothing away)"""
    inside, outside = set(), set()
    for cell in lesson.cells:
        regions = solution_regions(cell.source) if cell.cell_type == 'code' else []
        secret = {line.strip() for r in regions for line in r}
        inside |= secret
        outside |= {line.strip() for line in cell.source.splitlines()} - secret
    return {line for line in inside - outside if len(line) >= 10 and not line.startswith('#')}


def leaks(lesson, student):
    "The solution lines of `lesson` that appear anywhere in the notebook `student`"
    text = '\n'.join(strings(dict(student)))
    return sorted(line for line in solution_lines(lesson) if line in text)


# --------------------------------------------------------------------------------------------------- markers, package
def test_lessons_are_marked():
    assert {'01_sigmoid_neuron', '02_backprop', '05_pooling', '06_softmax', '07_sgd'} <= set(LESSONS)
    assert EXERCISES['01_sigmoid_neuron'] == ['sigmoid_grad', 'delta_rule']


@pytest.mark.parametrize('lesson', LESSONS)
def test_every_exercise_has_planted_data(lesson):
    missing = [name for name in EXERCISES[lesson] if name not in PLANTED]
    assert not missing, f"add a planted mistake for {missing} to tests/exercises_planted.py"


def test_marker_errors_name_the_problem():
    def nb(*sources): return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    region = f"def f():\n    {SOLUTION_BEGIN}\n    return 1\n    {SOLUTION_END}\n"
    with pytest.raises(et.ExerciseError, match='needs a check cell after'): et.exercises(nb('#| exercise f\n' + region))
    with pytest.raises(et.ExerciseError, match='without `#| exercise NAME`'): et.exercises(nb(region))
    with pytest.raises(et.ExerciseError, match='without ### END SOLUTION'):
        et.exercises(nb(f'#| exercise f\n{SOLUTION_BEGIN}\nx = 1\n'))
    with pytest.raises(et.ExerciseError, match='but no solution region'): et.exercises(nb('#| exercise f\ncheck()'))
    assert list(et.exercises(nb('#| exercise f\n' + region, '#| exercise f\ncheck()'))) == ['f']


def test_package_markers_are_balanced_comments():
    "Exported exercise cells keep their marker lines as comments, in balanced pairs, and no exercise directive"
    for path in (ROOT/'dlcourse').rglob('*.py'):
        text = path.read_text(encoding='utf-8')
        solution_regions(text)                                             # raises if a region is not closed
        assert not re.search(r'^\s*#\|\s*exercise', text, re.M), path


def test_docs_drop_markers_and_check_cells():
    require('yaml', 'docs')
    import docsite
    from fastcore.nbio import mk_cell
    sol = mk_cell(f'#| exercise: f\ndef f(x):\n    {SOLUTION_BEGIN}\n    return x\n    {SOLUTION_END}', 'code')
    chk = mk_cell("#| exercise: f\ncheck('f', f, 'dlcourse.x.f', cases=[1])", 'code')
    docsite.exercise_proc(sol)
    docsite.exercise_proc(chk)
    assert sol.source == '#| exercise: f\ndef f(x):\n    return x' and 'source' not in chk


# tools/exercises runs with this test's Python: its virtual environment, first on PATH
TOOL_ENV = dict(os.environ, VIRTUAL_ENV=str(Path(sys.executable).parents[1]),
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

# --------------------------------------------------------------------------------------------------- student notebooks
@pytest.fixture(scope='module')
def built(tmp_path_factory):
    "The student notebooks of every lesson, built by the command line"
    require('nbgrader')                  # tools/exercises build runs nbgrader's preprocessors
    out = tmp_path_factory.mktemp('exercises')
    r = subprocess.run([str(ROOT/'tools'/'exercises'), 'build', '--out', str(out)], capture_output=True, text=True,
                       env=TOOL_ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    return {lesson: et.read_nb(out/f'{lesson}.ipynb') for lesson in LESSONS}


@pytest.mark.parametrize('lesson', LESSONS)
def test_student_notebook_has_stubs_checks_and_no_solution(built, lesson):
    instructor, student = et.read_nb(LESSONS[lesson]), built[lesson]
    assert solution_lines(instructor), 'every exercise hides some code'
    assert leaks(instructor, student) == []
    text = '\n'.join(strings(dict(student)))
    assert 'BEGIN SOLUTION' not in text and 'HIDDEN TESTS' not in text
    assert all(not c.get('outputs') for c in student.cells) and 'widgets' not in student.metadata
    graded = [c.metadata['nbgrader']['grade_id'] for c in student.cells if c.metadata.get('nbgrader', {}).get('grade')]
    assert graded == [gid for ex in et.exercises(instructor).values() for gid in ex.grade_ids()]
    stubs = sum(c.source.count('raise NotImplementedError()') for c in student.cells if c.cell_type == 'code')
    assert stubs == sum(len(solution_regions(c.source)) for c in instructor.cells if c.cell_type == 'code')
    assert 'Exercises.' in student.cells[1].source


def test_leak_check_finds_a_leak(built):
    lesson = '01_sigmoid_neuron'
    leaky = nbformat.from_dict(json.loads(json.dumps(built[lesson])))
    leaky.cells.append(nbformat.v4.new_markdown_cell('spoiler: `return s * (1 - s)`'))
    assert leaks(et.read_nb(LESSONS[lesson]), leaky) == ['return s * (1 - s)']


# ---------------------------------------------------------------------------------------------------------- grading
SPECIAL = '01_sigmoid_neuron'   # the lesson the grader's failure modes are tried on


@pytest.fixture(scope='module')
def graded(built, tmp_path_factory):
    """One grading run over a folder of submissions: for every lesson the lesson itself, the student notebook as built,
    one with every planted mistake, one with only the first exercise a stub (if it has more); for lesson 01 also an infinite loop, a
    crash, a cheat and edited check cells. Returns the rows, the CSV path and the expected (student, lesson) statuses"""
    folder = tmp_path_factory.mktemp('submitted')
    def put(student, lesson, nb):
        (folder/student).mkdir(exist_ok=True)
        nbformat.write(nb, str(folder/student/f'{lesson}.ipynb'))
    for lesson, path in LESSONS.items():
        instructor, student = et.read_nb(path), built[lesson]
        put('instructor', lesson, instructor)
        put('student', lesson, student)
        put('planted', lesson, fill(student, instructor, planted=EXERCISES[lesson]))
        if len(EXERCISES[lesson]) > 1:       # the first exercise still a stub: only its check fails
            put('mixed', lesson, fill(student, instructor, keep_stub=EXERCISES[lesson][:1]))
    instructor, student = et.read_nb(LESSONS[SPECIAL]), built[SPECIAL]
    solved = lambda: fill(student, instructor)
    put('looping', SPECIAL, edit_cell(solved(), 'sigmoid_grad-solution',
                                      lambda s: s.replace('    s = sigmoid(x)\n', '    while True: pass\n')))
    put('crashing', SPECIAL, edit_cell(solved(), 'delta_rule-solution',
                                       lambda s: s.replace('        y = self(X)[0]\n', '        import os; os._exit(3)\n')))
    cheat = edit_cell(solved(), 'sigmoid_grad-solution', lambda s: s.replace(
        '    s = sigmoid(x)\n    return s * (1 - s)',
        '    import dlcourse.activations\n    return dlcourse.activations.sigmoid_grad(x)'))
    at = next(i for i, c in enumerate(cheat.cells) if c.metadata.get('nbgrader', {}).get('grade_id') == 'delta_rule-check')
    cheat.cells.insert(at, nbformat.v4.new_code_cell('from dlcourse.neuron import SigmoidNeuron'))
    put('cheating', SPECIAL, cheat)
    tampered = fill(student, instructor, planted=EXERCISES[SPECIAL])
    for gid in ('sigmoid_grad-check', 'delta_rule-check'): edit_cell(tampered, gid, lambda s: '#| exercise x\npass')
    put('tampered', SPECIAL, tampered)

    out = folder.parent/'grades.csv'
    t0 = time.monotonic()
    rows = et.grade(folder, out, cell_timeout=CELL_TIMEOUT, timeout=300, jobs=2, log=lambda *a: None)
    print(f"graded {len(rows)} rows in {time.monotonic() - t0:.0f} s")
    return rows, out


def expected_rows():
    "The whole table the grader must write for the `graded` folder: (student, notebook, exercise, points, status)"
    special = {
        'looping': {'sigmoid_grad': 'timeout', 'delta_rule': 'passed'},
        'crashing': {'sigmoid_grad': 'passed', 'delta_rule': 'crashed'},
        'cheating': {'sigmoid_grad': 'failed', 'delta_rule': 'failed'},
        'tampered': {'sigmoid_grad': 'failed', 'delta_rule': 'failed'},
    }
    rows = []
    for student in sorted(['instructor', 'student', 'planted', 'mixed', *special]):
        for lesson, names in EXERCISES.items():
            for i, name in enumerate(names):
                if student in special: status = special[student][name] if lesson == SPECIAL else 'missing'
                elif student == 'mixed' and len(names) == 1: status = 'missing'
                else: status = {'instructor': 'passed', 'student': 'not done', 'planted': 'failed',
                                'mixed': 'not done' if i == 0 else 'passed'}[student]
                rows.append((student, lesson, name, int(status == 'passed'), 1, status))
    return rows


def test_grade_table_is_exactly_as_expected(graded):
    rows, out = graded
    assert [(r['student'], r['notebook'], r['exercise'], r['points'], r['max_points'], r['status']) for r in rows] \
        == expected_rows()
    with open(out, newline='', encoding='utf-8') as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == list(et.CSV_COLUMNS)
    assert read == [{k: str(v) for k, v in r.items()} for r in rows]


def _row(rows, student, lesson, name):
    return next(r for r in rows if (r['student'], r['notebook'], r['exercise']) == (student, lesson, name))


@pytest.mark.parametrize('lesson', LESSONS)
def test_lesson_passes_and_student_version_fails_at_every_stub(graded, lesson):
    rows, _ = graded
    for name in EXERCISES[lesson]:
        assert _row(rows, 'instructor', lesson, name)['status'] == 'passed'
        msg = _row(rows, 'student', lesson, name)['message']
        assert msg.startswith(f"Exercise {name}: not done yet"), msg
        assert f"#| exercise {name}" in msg


@pytest.mark.parametrize('lesson', LESSONS)
def test_planted_mistakes_get_their_message(graded, lesson):
    rows, _ = graded
    for name in EXERCISES[lesson]:
        msg = _row(rows, 'planted', lesson, name)['message']
        assert msg.startswith(f"Exercise {name}: wrong result for") and PLANTED[name][1] in msg, msg
        # both values (a list of items shows the first differing item beside the expected one instead), and the hint
        assert ('expected:' in msg and 'got:' in msg or re.search(r'\n  item \d+: .*, expected ', msg)) and 'hint:' in msg, msg


def test_failure_modes_of_submissions(graded):
    rows, _ = graded
    assert 'interrupted' in _row(rows, 'looping', SPECIAL, 'sigmoid_grad')['message']
    assert 'the kernel died' in _row(rows, 'crashing', SPECIAL, 'delta_rule')['message']
    assert "calls the package's own solution (dlcourse.activations.sigmoid_grad)" in \
        _row(rows, 'cheating', SPECIAL, 'sigmoid_grad')['message']
    assert "here is dlcourse.neuron.SigmoidNeuron, the package's solution" in \
        _row(rows, 'cheating', SPECIAL, 'delta_rule')['message']
    assert PLANTED['sigmoid_grad'][1] in _row(rows, 'tampered', SPECIAL, 'sigmoid_grad')['message']
    assert _row(rows, 'looping', '02_backprop', 'hidden_deltas')['message'] == 'no 02_backprop.ipynb in the submission'


def test_a_stuck_kernel_times_out_and_is_killed(built, tmp_path, monkeypatch):
    "A loop that ignores the interrupt: the notebook's time limit stops it, its kernel is killed, the grader goes on"
    nb = edit_cell(fill(built[SPECIAL], et.read_nb(LESSONS[SPECIAL])), 'sigmoid_grad-solution', lambda s: s.replace(
        '    s = sigmoid(x)\n', '    import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n    while True: pass\n'))
    path = tmp_path/'stuck.ipynb'
    nbformat.write(nb, str(path))
    killed, kill = [], et._kill_kernel
    monkeypatch.setattr(et, '_kill_kernel', lambda pid: (killed.append(pid), kill(pid)))
    t0 = time.monotonic()
    res = et.grade_one(path, LESSONS[SPECIAL], cell_timeout=3, timeout=15)
    assert time.monotonic() - t0 < 40
    assert {name: r[2] for name, r in res.items()} == {'sigmoid_grad': 'timeout', 'delta_rule': 'timeout'}
    assert 'was stopped' in res['delta_rule'][3]
    assert len(killed) == 1
    for _ in range(50):                               # the kernel, orphaned and killed, is reaped by init
        if not Path(f'/proc/{killed[0]}').exists(): break
        time.sleep(0.1)
    assert not Path(f'/proc/{killed[0]}').exists(), 'the stuck kernel is still alive'


def test_solved_student_notebook_runs_top_to_bottom(built, tmp_path):
    "With `--full` every cell runs; a solved student notebook passes, with the package's solutions hidden in its checks"
    lesson = '06_softmax' if '06_softmax' in LESSONS else next(iter(LESSONS))
    (tmp_path/'ada').mkdir()
    nbformat.write(fill(built[lesson], et.read_nb(LESSONS[lesson])), str(tmp_path/'ada'/f'{lesson}.ipynb'))
    rows = et.grade(tmp_path, None, full=True, cell_timeout=120, timeout=300, jobs=1, log=lambda *a: None)
    assert {r['status'] for r in rows} == {'passed'}


def test_command_line(tmp_path):
    "`tools/exercises list` names the exercises; `grade` writes the CSV and prints the table; a wrong folder is refused"
    env = TOOL_ENV
    r = subprocess.run([str(ROOT/'tools'/'exercises'), 'list'], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and 'sigmoid_grad, delta_rule' in r.stdout
    r = subprocess.run([str(ROOT/'tools'/'exercises'), 'grade', str(tmp_path/'nowhere')], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and 'is not a folder' in r.stderr
    assert 'exercises/' in (ROOT/'.gitignore').read_text().split()
