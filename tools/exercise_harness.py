"""The program that runs a notebook for the grader (tools/exercise_tool.py), inside the sandbox (tools/exercise_sandbox.py).

    python exercise_harness.py SPEC.json

SPEC names the cells to run, in order, each with its role (`code`, `check` or `test`), the package objects to hide, the
mode and the file to append records to (one JSON line each, values written by `dlcourse.exercises.encode`: no pickle).

- mode `record` (a student's submission): the package's solutions named in `hide` are replaced by stubs before any cell
  runs, and for good: no code object of theirs is left to keep. `check(...)` in a check cell only records what the
  student's code returns for each case; nothing is compared here. In a lesson's test cell `test_eq`, `test_close`,
  `test_fail`, `test_ne`, `test_is` and `assert` record the values they were given instead of testing them.
- mode `expect` (the lesson itself, trusted): the same, but `check(...)` records the reference's results and those of
  the known mistakes, with the solutions put back while it computes them.

Whatever a student's cell redefines, only values leave this process; the grader compares them with the lesson's.
"""
import ast
import inspect
import json
import signal
import sys
import time
import traceback


T0 = time.monotonic()
_UNSET = object()


def main(spec_path):
    with open(spec_path, encoding='utf-8') as f: spec = json.load(f)
    out = open(spec['out'], 'a', encoding='utf-8')

    def emit(rec):
        out.write(json.dumps(rec) + '\n')
        out.flush()

    import numpy as np                                     # noqa: F401  (the cells' first import is then cheap)
    import dlcourse.exercises as dx
    from dlcourse.exercises import PlainDataError, SolutionHidden, encode, fingerprint

    expect = spec['mode'] == 'expect'
    saved = []                                             # expect mode only: the solutions, to put back

    def arm():
        for name in spec['hide']:
            owner, attr, obj = dx._resolve(name)
            raw = owner.__dict__.get(attr, obj) if isinstance(owner, type) else obj
            if expect: saved.append((owner, attr, raw))
            setattr(owner, attr, dx._hidden_stub)
            for mod in list(sys.modules.values()):     # the same object imported elsewhere in the package
                if mod is owner or not getattr(mod, '__name__', '').startswith('dlcourse'): continue
                for a, v in list(vars(mod).items()):
                    if v is obj:
                        if expect: saved.append((mod, a, v))
                        setattr(mod, a, dx._hidden_stub)
            py = getattr(obj, 'py_func', None)        # a Numba kernel: its Python function too
            if inspect.isfunction(py) and not py.__code__.co_freevars:
                if expect: saved.append((py, '__code__', py.__code__))
                py.__code__ = dx._hidden_stub.__code__
            fn = dx._function_of(obj)
            if fn is not None and not fn.__code__.co_freevars:
                if expect: saved.append((fn, '__code__', fn.__code__)); saved.append((fn, '__kwdefaults__', fn.__kwdefaults__))
                fn.__code__, fn.__kwdefaults__ = dx._hidden_stub.__code__, dx._hidden_stub.__kwdefaults__

    class Disarmed:
        "expect mode: the solutions back in place while the reference runs"
        def __enter__(self):
            self.stubs = [(o, a, getattr(o, a) if not isinstance(o, type) else o.__dict__.get(a)) for o, a, _ in saved]
            for o, a, v in saved: setattr(o, a, v)
        def __exit__(self, *exc):
            for o, a, v in reversed(self.stubs): setattr(o, a, v)

    arm()
    if not expect:
        del saved[:]
        sys.meta_path.insert(0, _NoReload({n for n in sys.modules if n.split('.')[0] == 'dlcourse'}))

    def value(v):
        try: return encode(v)
        except PlainDataError: return {'repr': ' '.join(repr(v).split())[:300], 'type': type(v).__name__}
        except Exception as e: return {'repr': f"<unreadable {type(v).__name__}: {type(e).__name__}>", 'type': type(v).__name__}

    def raised(e):
        "An exception as data: its type, message and the functions it went through (innermost last)"
        where = [fr.f_code.co_qualname for fr, _ in traceback.walk_tb(e.__traceback__)
                 if not fr.f_code.co_filename.startswith((sys.prefix, sys.base_prefix, dx.__file__.rsplit('/', 2)[0]))]
        return {'type': type(e).__name__, 'message': str(e)[:1000], 'where': where[-8:]}

    state = dict(cell=None, n=0)
    calls = {}

    # ------------------------------------------------------------------------------------------------ check cells
    def check(exercise, student, reference, cases, run=None, mistakes=None, hint='', hide=(), names=None,
              rtol=1e-6, atol=1e-9):
        call = calls.setdefault(exercise, 0)
        calls[exercise] += 1
        cases = [c if isinstance(c, tuple) else (c,) for c in cases]
        module = getattr(student, '__module__', None) or ''
        head = dict(k='check', cell=state['cell'], exercise=exercise, call=call, cases=len(cases),
                    student=getattr(student, '__name__', type(student).__name__))
        if module.split('.')[0] == 'dlcourse' and not expect:
            emit(dict(head, package=f"{module}.{getattr(student, '__qualname__', '')}"))
            return
        if expect:
            with Disarmed(): ref = dx._resolve(reference)[2] if isinstance(reference, str) else reference
            hidden_names = ((reference,) if isinstance(reference, str) and not isinstance(ref, type) else ()) + tuple(hide)
            emit(dict(head, hint=hint, names=list(names) if names else None, rtol=rtol, atol=atol, hide=list(hidden_names),
                      mistakes=list(mistakes or {})))
        else: emit(head)
        for j, case in enumerate(cases):
            rec = dict(k='case', exercise=exercise, call=call, case=j, fp=fingerprint(case))
            if expect:
                rec['call_text'] = dx._call_text(student, run, case)
                with Disarmed():
                    rec['args'] = dx._args_text(student if run is None else run, case, skip=0 if run is None else 1)
                    res = dx._outcome(ref, run, case)
                    rec['expected'] = {'raised': raised(res)} if isinstance(res, BaseException) else {'value': value(res)}
                    rec['mistakes'] = []
                    for h, wrong in (mistakes or {}).items():
                        w = dx._outcome(wrong, None, case)
                        rec['mistakes'].append({'raised': type(w).__name__} if isinstance(w, BaseException) else value(w))
            else:
                try:
                    got = student(*case) if run is None else run(student, *case)
                    rec['got'] = value(got)
                except NotImplementedError: rec['not_done'] = True
                except SolutionHidden: rec['hidden'] = True
                except Exception as e: rec['raised'] = raised(e)
            emit(rec)

    # ------------------------------------------------------------------------------------------------- test cells
    def record(what, *vals, **extra):
        line = sys._getframe(2).f_lineno
        emit(dict(k='value', cell=state['cell'], n=state['n'], what=what, line=line, values=[value(v) for v in vals], **extra))
        state['n'] += 1

    def test_eq(a, b): record('test_eq', a, b)
    def test_ne(a, b): record('test_ne', a, b)
    def test_is(a, b): record('test_is', a is b)
    def test_close(a, b, eps=1e-5): record('test_close', a, b, eps=value(eps))
    def test_fail(f, msg='', contains='', exc=Exception, args=None, kwargs=None):
        try: f(*(args or []), **(kwargs or {}))
        except exc as e: return record('test_fail', type(e).__name__, bool(not contains or contains in str(e)))
        except Exception as e: return record('test_fail', type(e).__name__, False)
        record('test_fail', None, False)
    def test_assert(cond): record('assert', bool(cond))
    recorders = dict(test_eq=test_eq, test_ne=test_ne, test_is=test_is, test_close=test_close, test_fail=test_fail,
                     __dlc_assert__=test_assert)

    # ---------------------------------------------------------------------------------------------------- running
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config
    cfg = Config()
    cfg.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=cfg)
    ns = shell.user_ns

    class CellTimeout(BaseException): pass

    def on_alarm(signum, frame): raise CellTimeout()
    signal.signal(signal.SIGALRM, on_alarm)

    emit(dict(k='ready', seconds=round(time.monotonic() - T0, 3)))
    for cell in spec['cells']:
        i, role, src = cell['index'], cell['role'], cell['source']
        state.update(cell=i, n=0)
        emit(dict(k='start', cell=i))
        restore = {}
        if role == 'check': restore, ns['check'] = {'check': ns.get('check', _UNSET)}, check
        elif role == 'test':                             # the recorders for this cell only: other cells test as usual
            restore = {n: ns.get(n, _UNSET) for n in recorders}
            ns.update(recorders)
            src = _asserts_recorded(shell.transform_cell(src))
        t0, c0 = time.monotonic(), time.process_time()
        signal.setitimer(signal.ITIMER_REAL, spec['cell_timeout'])
        try: result = shell.run_cell(src, store_history=False, silent=True)
        except CellTimeout: result = None
        finally: signal.setitimer(signal.ITIMER_REAL, 0)
        for n, v in restore.items():
            if v is _UNSET: ns.pop(n, None)
            else: ns[n] = v
        err = None if result is None else (result.error_before_exec or result.error_in_exec)
        if result is None or isinstance(err, CellTimeout):
            emit(dict(k='cell', cell=i, error={'type': 'CellTimeout', 'message': '', 'where': []}))
            continue
        emit(dict(k='cell', cell=i, error=None if err is None else raised(err), seconds=round(time.monotonic() - t0, 3),
                  cpu=round(time.process_time() - c0, 3)))
    emit(dict(k='done'))
    out.close()


class _NoReload:
    "A finder that refuses to load a second time the package modules loaded before the submission ran (record mode)"
    def __init__(self, names): self.names = frozenset(names)
    def find_spec(self, name, path=None, target=None):
        if name in self.names and (target is not None or sys.modules.get(name) is None):
            raise ImportError(f"{name} cannot be reloaded while a submission is graded (its solutions are hidden)")
        return None


def _asserts_recorded(src):
    "A test cell's source with every `assert x, msg` turned into `__dlc_assert__(x)`, on the same lines"
    try: tree = ast.parse(src)
    except SyntaxError: return src
    lines = src.splitlines(keepends=True)
    for node in sorted((n for n in ast.walk(tree) if isinstance(n, ast.Assert)), key=lambda n: (n.lineno, n.col_offset),
                       reverse=True):
        test = ast.get_source_segment(src, node.test)
        first, last = lines[node.lineno - 1], lines[node.end_lineno - 1]
        text = first[:node.col_offset] + f"__dlc_assert__({test.replace(chr(10), ' ')})" + last[node.end_col_offset:]
        lines[node.lineno - 1:node.end_lineno] = [text] + ['\n'] * (node.end_lineno - node.lineno)
    return ''.join(lines)

if __name__ == '__main__':
    main(sys.argv[1])
