"""Build the dlcourse documentation website from the notebooks.

    python tools/docs/docsite.py build [--engine auto|quarto|nbconvert] [--out _docs]
    python tools/docs/docsite.py serve [--port 8000] [--dir _docs]

The build runs in three steps:

1. **process** (both paths): every page of `nbs/`, the library notebooks of `nbs/lib/` among them (`SECTIONS`: their
   pages are `lib/<name>.html`, where nbdev's doc links point, listed under "Library" after the lessons), is run
   through nbdev's own notebook processors (`FilterDefaults`: title and description from the `# Title` / `> summary`
   cells, `show_doc` API docs for exported names, `#| hide` cells dropped, ...) into `_proc/`, as `nbdev-proc-nbs`
   does, but without its Quarto check (`_ensure_quarto()` would try to download Quarto) and with one change
   (`_exec_for_docs`): the code show_doc needs runs without replacing the notebook's saved outputs. The exercises stay
   out of the pages (`exercise_proc`): nbgrader's solution markers are removed from the code and the exercises' check
   cells are dropped. One more processor adds each chapter's German lecture title as its subtitle, from
   `tools/docs/chapters.yml`, the one file that holds them. `_proc/sidebar.yml` lists the pages in lecture order.
2. **render**: with `quarto` on PATH, nbdev's Quarto renderer (what `nbdev-docs` runs). Without it, nbconvert's HTML
   exporter with the `dlcourse` template (tools/docs/templates): the same pages under the same names, a sidebar in the
   same order, the subtitles; the API docs' headings get the lower-case ids that nbdev's links use, as on Quarto's
   pages (`api_anchors`). Notebooks are rendered with their saved outputs, never executed; saved widget state
   (`metadata.widgets`) is embedded.
3. **offline** (both paths): the browser libraries that Quarto and nbconvert load from CDNs (require.js, jQuery,
   @jupyter-widgets/html-manager, anywidget's front end, MathJax) are copied from `tools/docs/node_modules` (npm packages
   pinned in tools/docs/package-lock.json, installed with `npm ci`) into `site_libs/vendor/`, and every CDN <script> or
   <link> is pointed at the copy, from the page's own folder (`../site_libs/...` on a page in lib/); nbdev's links
   from the site root (`/lib/gradcheck.html#grad_check`) become relative ones. The build fails if any page still loads
   anything from outside the site.
"""
import argparse
import contextlib
import html
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import finish  # noqa: E402  (tools/docs/finish.py: the finishing step of both paths)

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHAPTERS_FILE = HERE/'chapters.yml'
TEMPLATES = HERE/'templates'
NODE_MODULES = HERE/'node_modules'
VENDOR_DIR = 'site_libs/vendor'     # where the offline step puts the vendored libraries, relative to the site root
PAGE_SUFFIXES = ('.ipynb', '.md')
# Subfolders of nbs/ whose notebooks are pages too, each a section of the sidebar after the lessons: folder -> heading.
# Their pages keep the folder in their address (nbs/lib/gradcheck.ipynb -> lib/gradcheck.html), where nbdev's doc links
# (`show_doc`, backticks) point.
SECTIONS = {'lib': 'Library'}


def log(*args):
    print('[docs]', *args, flush=True)


class BuildError(RuntimeError):
    "The site cannot be built as asked; the message says why and what to do"


# ---------------------------------------------------------------------------------------------------------------- pages
@dataclass
class Page:
    "One page of the site, in sidebar order"
    src: Path                 # the source in nbs/
    name: str                 # its path in nbs/ without the suffix: 01_sigmoid_neuron, lib/gradcheck
    section: str = ''         # the sidebar heading it is listed under ('' for the lessons and other top-level pages)
    title: str = ''
    subtitle: str = ''
    description: str = ''
    output: str = ''          # its HTML file from the site root, as nbdev/Quarto name it: lib/gradcheck.html

    @property
    def rel(self):
        "The source's path in nbs/ (and in _proc/): 01_sigmoid_neuron.ipynb, lib/gradcheck.ipynb"
        return self.name + self.src.suffix

    @property
    def root(self):
        "The way from the page's folder up to the site root: '' or '../'"
        return '../' * self.name.count('/')

    @property
    def number(self):
        "The chapter number of a numbered notebook ('03a'), else ''"
        m = re.match(r'^(\d+[a-z]?)_', self.name)
        return m.group(1) if m else ''

    @property
    def nav_text(self):
        "The page's entry in the sidebar: its number and title"
        if self.name == 'index': return 'Overview'
        return f'{self.number} {self.title}' if self.number else self.title


def load_chapters(path=CHAPTERS_FILE):
    "The site settings of `chapters.yml`: site title and the map notebook name -> German lecture title"
    d = yaml.safe_load(Path(path).read_text(encoding='utf-8')) or {}
    chapters = d.get('chapters') or {}
    if not isinstance(chapters, dict): raise BuildError(f'{path}: `chapters` must map notebook names to titles')
    library = d.get('library') or []
    if not isinstance(library, list): raise BuildError(f'{path}: `library` must list notebook names of nbs/lib')
    return dict(site_title=d.get('site_title', 'dlcourse'), chapters={str(k): (v or '') for k, v in chapters.items()},
                library=[str(n) for n in library])


def _page_key(p, order):
    """index first, then numbered chapters in name order (lecture order), then each section of `SECTIONS` (its pages in
    the order of `order`, a list of their stems, the rest after them by name), then the other pages (glossary) by name"""
    if p.stem == 'index' and len(p.parts) == 1: return (0, 0, '')
    if len(p.parts) == 1: return (1 if re.match(r'^\d', p.stem) else 2 + len(SECTIONS), 0, p.stem)
    section = 2 + list(SECTIONS).index(p.parts[0])
    return (section, order.index(p.stem) if p.stem in order else len(order), p.stem)


def collect_pages(nbs, library_order=None):
    """Every page of `nbs` (notebooks and markdown pages, not `_*` or `.*`) and every notebook of its `SECTIONS`
    subfolders (nbs/lib), in sidebar order; `library_order`: the stems of the library notebooks in the order the
    sidebar lists them (default: `library` of tools/docs/chapters.yml; those it lacks follow by name)"""
    if library_order is None: library_order = load_chapters()['library']
    nbs = Path(nbs)
    srcs = [p for p in nbs.iterdir() if p.is_file() and p.suffix in PAGE_SUFFIXES and p.name[0] not in '._']
    for folder in SECTIONS:
        if (nbs/folder).is_dir():
            srcs += [p for p in (nbs/folder).iterdir() if p.is_file() and p.suffix == '.ipynb' and p.name[0] not in '._']
    rels = sorted((p.relative_to(nbs) for p in srcs), key=lambda r: _page_key(r, list(library_order)))
    return [Page(src=nbs/r, name=r.with_suffix('').as_posix(), section=SECTIONS[r.parts[0]] if len(r.parts) > 1 else '')
            for r in rels]


def nbdev_html_name(src):
    "The output name nbdev gives a page, without its folder (`01_sigmoid_neuron.ipynb` -> `sigmoid_neuron.html`)"
    from nbdev.config import nbpath2html
    return nbpath2html(Path(src).with_suffix('.ipynb')).name


def relative_url(target, folder=''):
    "The address of site file `target` (from the site root: lib/gradcheck.html) on a page in `folder` ('' or 'lib')"
    return posixpath.relpath(target, folder or '.')


# -------------------------------------------------------------------------------------------------- markdown clean-ups
_FM_RE = re.compile(r'^---\s*\n(.*?\n)---\s*(?:\n|$)', re.DOTALL)
_LINK_RE = re.compile(r'(?<!!)\[([^\]\n]*)\]\(([^)\s]+)\)(\{[^}\n]*\})?')


def split_frontmatter(text):
    "(YAML front matter as a dict, the rest) of a markdown text or raw cell"
    m = _FM_RE.match(text.lstrip())
    if not m: return {}, text
    return (yaml.safe_load(m.group(1)) or {}), text.lstrip()[m.end():]


def dump_frontmatter(d):
    return '---\n' + yaml.safe_dump(d, allow_unicode=True, sort_keys=False) + '---\n\n'


def link_target(url, here=''):
    """The page (its name, as `Page.name`) that a link to a notebook or markdown page on a page in folder `here` of nbs/
    ('' or 'lib') points at (`../02_backprop.ipynb#x` from lib -> 02_backprop, `glossary.md` -> glossary), or None for
    any other link"""
    t = urlsplit(url)
    if t.scheme or t.netloc or not t.path.endswith(PAGE_SUFFIXES) or t.path.startswith('/'): return None
    return posixpath.splitext(posixpath.normpath(posixpath.join(here, unquote(t.path))))[0]


def fix_links(md, page_names, has_repo, here=''):
    """Links that only work in the built site: a link to a notebook that does not exist (yet) becomes plain text, and
    nbdev's `[source](/blob/...)` links, which need `git_url` in pyproject.toml, are dropped while it is unset.
    `page_names`: the pages' names (`Page.name`); `here`: the folder in nbs/ of the page that holds the links"""
    def sub(m):
        text, url, attrs = m.group(1), m.group(2), m.group(3) or ''
        if not has_repo and text == 'source' and url.startswith('/blob/'): return ''
        target = link_target(url, here)
        if target is not None and target not in page_names: return text
        return m.group(0)
    return _LINK_RE.sub(sub, md)


# ------------------------------------------------------------------------------------------------------------ glossary
_TERM_RE = re.compile(r'\(\*([^*\n]+?)\*\s*[),:;]')   # forward step (*Vorwärtsmeldung*)


def glossary_rows(path):
    "The rows (Deutsch, English, Lesson) of the glossary page's table"
    rows = []
    for line in Path(path).read_text(encoding='utf-8').splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')] if line.lstrip().startswith('|') else None
        if not cells or set(''.join(cells)) <= set('-: ') or cells[0] == 'Deutsch': continue
        rows.append(tuple(cells))
    return rows


def german_terms(nb_path):
    "The German terms a notebook introduces the house way: the English term, then the German one in parentheses, in italics"
    nb = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    md = '\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown')
    return {t.strip() for t in _TERM_RE.findall(md)}


def glossary_missing(nbs):
    "German terms that the notebooks of `nbs` introduce and `nbs/glossary.md` lacks: {term: [notebook, ...]}"
    gl = Path(nbs)/'glossary.md'
    if not gl.exists(): return {}
    known = {r[0].lower() for r in glossary_rows(gl)}
    missing = {}
    for nb in sorted(Path(nbs).glob('*.ipynb')):
        for t in german_terms(nb):
            tl = t.lower()       # a plural counts: Aktivierungskarten is Aktivierungskarte
            if not any(tl == k or (tl.startswith(k) and len(tl) - len(k) <= 2) for k in known):
                missing.setdefault(t, []).append(nb.stem)
    return missing


# ------------------------------------------------------------------------------------------------- reading the cells
_TEST_CALL_RE = re.compile(r'^(?:test(?:_\w+)?|np\.testing\.assert_\w+|assert_\w+)$')


def _is_check(node):
    "A statement of a check cell: an assert, a `test_eq`-style call, an assignment, or a loop/with of such statements"
    import ast
    if isinstance(node, (ast.Assert, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Import, ast.ImportFrom, ast.Pass)):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return bool(_TEST_CALL_RE.match(ast.unparse(node.value.func)))
    if isinstance(node, (ast.For, ast.With)): return all(_is_check(n) for n in node.body)
    return False


def is_check_cell(source, outputs=()):
    """A code cell that only checks (`test_eq`, `test_fail`, `assert`, with the assignments they need) and shows nothing:
    the site folds it away under "Checks", below the prose it follows"""
    import ast
    if any(o.get('output_type') in ('display_data', 'execute_result', 'error') for o in outputs): return False
    code = '\n'.join(l for l in source.splitlines() if not l.lstrip().startswith('#|'))
    try: tree = ast.parse(code)
    except SyntaxError: return False
    tests = [n for n in ast.walk(tree) if isinstance(n, ast.Assert)
             or (isinstance(n, ast.Call) and _TEST_CALL_RE.match(ast.unparse(n.func)))]
    return bool(tree.body) and bool(tests) and all(_is_check(n) for n in tree.body)


def _plain(md):
    "Markdown as plain text: links, emphasis, code marks and HTML dropped, the text kept (math stays as written)"
    md = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', md)
    md = re.sub(r'<[^>]+>', '', md)
    md = re.sub(r'[*_`]+', '', md)
    return re.sub(r'\s+', ' ', md).strip()


def figure_alt(source, prose):
    """A figure's alt text: its caption (`#| fig-cap:`), else the sentence of the prose before it that introduces it (the
    last one, up to 250 characters), else the title the code gives it; '' when there is none"""
    m = re.search(r'^#\|\s*fig-cap:\s*(.+)$', source, re.M)
    if m: return m.group(1).strip().strip('"\'')
    text = _plain(re.sub(r'^#+ .*$', '', prose, flags=re.M))
    sentences = [s.strip() for s in re.split(r'(?<=[.!?:])\s+(?=[A-Z$(])', text) if len(s.strip()) > 12]
    if sentences:
        alt = sentences[-1].rstrip(':').strip()
        return alt if len(alt) <= 250 else alt[:247].rsplit(' ', 1)[0] + '…'
    m = re.search(r'(?:suptitle|set_title|title)\(\s*f?[\'"]([^\'"]{8,})', source)
    return m.group(1) if m else ''


IMAGE_MIMES = ('image/png', 'image/jpeg', 'image/svg+xml')
_SIG_RE = re.compile(r'^(### +)([\w.]+)(\s*\n+```python\n)def (\w+)\(', re.M)


def _is_class(name):
    "Is `name` (as nbdev's show_doc heads its docs) a class of the package?"
    import importlib, inspect
    try: from dlcourse._modidx import d
    except ImportError: return name[:1].isupper()
    for mod, syms in d['syms'].items():
        obj_name = f'{mod}.{name}'
        if obj_name in syms:
            try: return inspect.isclass(getattr(importlib.import_module(mod), name))
            except Exception: break
    return name[:1].isupper() and not name.isupper()


def clean_signature(md):
    """nbdev's API docs, as a reader expects them: a class as `class Learner(...)`, not `def Learner(...):`, and no type
    clutter that says nothing (`rng:NoneType=None` -> `rng=None`)"""
    if '```python' not in md: return md

    def sub(m):
        head, name = m.group(2), m.group(4)
        if '.' in head or not _is_class(head): return m.group(0)
        return f'{m.group(1)}{head}{m.group(3)}class {name}('
    out = _SIG_RE.sub(sub, md)
    if out != md:     # the class's signature ends with `)`, not `):` (`class Module():` -> `class Module()`)
        out = re.sub(r'(```python\nclass [^`]*?\))\s*:\s*(\n```)', r'\1\2', out)
    return re.sub(r'(\w+)\s*:\s*NoneType\s*=', r'\1=', out)


# ------------------------------------------------------------------------------------------------------- 1. processing
def exercise_proc(cell):
    """An nbdev notebook processor for the course's exercises (nbs/11_exercises.ipynb): the marker lines of nbgrader's
    solution regions are removed from every code cell, and an exercise's check cells (`#| exercise NAME` cells without a
    solution region) are dropped: they are for students, the lesson's own tests stay"""
    from dlcourse.exercises import exercise_name, solution_regions, strip_solution_markers
    if cell.cell_type != 'code': return
    if exercise_name(cell.source) is not None and not solution_regions(cell.source): del cell['source']
    elif '### ' in cell.source: cell.source = strip_solution_markers(cell.source)


def _site_proc(page, chapters, page_names, has_repo):
    """An nbdev notebook processor: the chapter's German subtitle into the front matter, links fixed (see `fix_links`),
    API signatures cleaned (`clean_signature`), test cells folded away under "Checks" (`is_check_cell`: Quarto's
    `code-fold`, the nbconvert path's <details>), and every figure given alt text from its caption (`figure_alt`:
    Quarto's `fig-alt`, read by the nbconvert template too)"""
    here = posixpath.dirname(page.name)

    class SiteProc:
        def __init__(self, nb):
            self.nb, self.prose = nb, ''

        def __call__(self, cell):
            if cell.cell_type == 'markdown':
                cell.source = fix_links(cell.source, page_names, has_repo, here)
                self.prose = cell.source
            for o in cell.get('outputs', []):
                md = o.get('data', {}).get('text/markdown')
                if md is not None:
                    o['data']['text/markdown'] = clean_signature(fix_links(''.join(md) if isinstance(md, list) else md,
                                                                           page_names, has_repo, here))
            if cell.cell_type == 'code':
                if is_check_cell(cell.source, cell.get('outputs', [])):
                    cell.source = '#| code-fold: true\n#| code-summary: "Checks"\n' + cell.source
                images = [o['data'] for o in cell.get('outputs', []) for m in IMAGE_MIMES if m in o.get('data', {})]
                if images and not re.search(r'^#\|\s*fig-alt:', cell.source, re.M):
                    svg = ''.join(images[0].get('image/svg+xml', ''))
                    m = re.search(r'<title>([^<]+)</title>', svg)
                    alt = html.unescape(m.group(1)).strip() if m else figure_alt(cell.source, self.prose)
                    if alt: cell.source = f'#| fig-alt: {json.dumps(alt, ensure_ascii=False)}\n' + cell.source

        def end(self):
            cells = self.nb.cells
            fm, first = {}, cells[0] if cells else None
            if first is not None and first.cell_type == 'raw': fm, _ = split_frontmatter(first.source)
            if not fm:
                from fastcore.nbio import mk_cell
                first = mk_cell('', 'raw')
                cells.insert(0, first)
                fm = {'title': page.name, 'output-file': nbdev_html_name(page.src)}
            if chapters.get(page.name) and 'subtitle' not in fm: fm['subtitle'] = chapters[page.name]
            first.source = dump_frontmatter(fm)
    return SiteProc


def _exec_for_docs(notes):
    """nbdev's `exec_show_docs` (which runs the code that `show_doc` needs), changed so that the notebook's saved
    outputs stay as they are: nbdev re-runs every exported cell and every cell with an import statement, stores their
    fresh outputs in place of the saved ones, and stops at the first error. Here exported cells run without touching
    their outputs; of the other cells with imports, only the import statements run (a cell that also trains a network
    would otherwise train again, and one that needs the cells before it fails); only `show_doc` and `#| exec_doc` cells
    store what they print. A failing import is noted in `notes`, not fatal: the API docs do not need it"""
    import ast
    from nbdev.processors import _do_eval, _show_docs, exec_show_docs
    from fastcore.basics import str2bool

    def imports_only(src):
        try: tree = ast.parse(src)
        except SyntaxError: return ''
        return ast.unparse(ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))],
                                      type_ignores=[]))

    class exec_for_docs(exec_show_docs):
        def __call__(self, cell):
            if not self.nb.has_docs_ or not hasattr(self, 'k'): return
            fm = getattr(self.nb, 'frontmatter_', {})
            if str2bool(fm.get('skip_showdoc', False)) or not _do_eval(cell): return
            exported = any(d.startswith('export') for d in cell.directives_)
            shows = 'exec_doc' in cell.directives_ or bool(_show_docs(cell.parsed_() or []))
            if shows: self.k.cell(cell)                                  # the API docs: fresh output wanted
            else: self.k.run(cell.source if exported else imports_only(cell.source))
            if (e := self.k.exc) is None: return
            self.k.exc = None
            if exported or shows:
                raise BuildError(f'{fm.get("title", "")}: cell {cell.idx_} failed while rendering the API docs:\n'
                                 f'{cell.source}\n{type(e).__name__}: {e}') from e
            notes.append(f'cell {cell.idx_}: {type(e).__name__}: {e}'.splitlines()[0])
    return exec_for_docs


@contextlib.contextmanager
def _cwd(path):
    old = os.getcwd()
    os.chdir(path)
    try: yield
    finally: os.chdir(old)


def process(pages, nbs, proc, site_title, chapters):
    """nbdev-process every page of `nbs` into `proc` (nbdev's `proc_nbs` without its Quarto step) and fill in each
    `Page`'s title, subtitle, description and output name; also writes the Quarto project files into `proc`"""
    from fastcore.nbio import read_nb, write_nb
    from nbdev.config import get_config
    from nbdev.process import NBProcessor
    from nbdev.processors import FilterDefaults, exec_show_docs
    from ipywidgets import Widget

    nbs, proc = Path(nbs), Path(proc)
    if proc.exists(): shutil.rmtree(proc)
    proc.mkdir(parents=True)
    # everything that is not a page travels as it is: _quarto.yml, styles.css, images
    for p in sorted(nbs.rglob('*')):
        rel = p.relative_to(nbs)
        if p.is_dir() or any(part[0] in '._' and part not in ('_quarto.yml',) for part in rel.parts): continue
        if p.suffix == '.ipynb' or (len(rel.parts) == 1 and p.suffix in PAGE_SUFFIXES): continue   # pages, other notebooks
        (proc/rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, proc/rel)

    cfg = get_config()
    has_repo = bool(cfg.get('git_url'))
    page_names = {p.name for p in pages}
    os.environ['IN_TEST'] = '1'          # as nbdev's processing does: notebooks may skip slow work
    try:
        for page in pages:
            t0 = time.perf_counter()
            if page.src.suffix == '.ipynb':
                nb = read_nb(page.src)
                Widget.close_all()       # nbdev saves the state of the widgets its run creates: only this notebook's
                failed = []
                procs = [exercise_proc] + [_exec_for_docs(failed) if p is exec_show_docs else p
                                           for p in FilterDefaults().procs()]
                procs.append(_site_proc(page, chapters, page_names, has_repo))
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter('always')
                    try: NBProcessor(nb=nb, procs=procs, rm_directives='quarto').process()
                    except Exception as e: raise BuildError(f'nbdev could not process {page.src}: {e}') from e
                for f in failed: log(f'  note: {page.rel} {f} (an import that failed; the page is built)')
                for w in caught:   # nbdev's warning about cells mixing imports and code: handled, see _exec_for_docs
                    if 'imports and other code' not in str(w.message):
                        log(f'  note from nbdev on {page.rel}: {str(w.message).splitlines()[0]}')
                (proc/page.rel).parent.mkdir(parents=True, exist_ok=True)
                write_nb(nb, proc/page.rel)
                fm, _ = split_frontmatter(nb.cells[0].source)
            else:
                fm, body = split_frontmatter(page.src.read_text(encoding='utf-8'))
                if chapters.get(page.name) and 'subtitle' not in fm: fm['subtitle'] = chapters[page.name]
                fm.setdefault('title', page.name)
                (proc/page.rel).parent.mkdir(parents=True, exist_ok=True)
                (proc/page.rel).write_text(dump_frontmatter(fm) + fix_links(body, page_names, has_repo,
                                                                            posixpath.dirname(page.name)),
                                           encoding='utf-8')
            page.title = str(fm.get('title') or page.name)
            page.subtitle = str(fm.get('subtitle') or '')
            page.description = str(fm.get('description') or '')
            # Quarto writes `output-file` into the source's folder: lib/gradcheck.ipynb -> lib/gradcheck.html
            page.output = posixpath.join(posixpath.dirname(page.name), fm.get('output-file') or nbdev_html_name(page.src))
            log(f'  processed {page.rel:28} -> {page.output:24} {time.perf_counter() - t0:5.1f} s')
    finally:
        os.environ.pop('IN_TEST', None)
    write_quarto_files(proc, pages, site_title, cfg)


def sidebar_contents(pages):
    "Quarto's `website.sidebar.contents`: the pages in sidebar order, those of a `SECTIONS` folder under its heading"
    contents, sections = [], {}
    for p in pages:
        entry = {'text': p.nav_text, 'href': p.rel}
        if not p.section: contents.append(entry)
        elif p.section in sections: sections[p.section]['contents'].append(entry)
        else:
            sections[p.section] = {'section': p.section, 'contents': [entry]}
            contents.append(sections[p.section])
    return contents


def write_quarto_files(proc, pages, site_title, cfg):
    "`nbdev.yml` (what nbdev's `refresh_quarto_yml` writes) and `sidebar.yml` (lecture order), into `proc` only"
    from nbdev.quarto import _nbdev_yml
    vals = {k: cfg.get(k, '') for k in ['title', 'description', 'branch', 'git_url', 'doc_host', 'doc_baseurl']}
    vals['title'] = vals['title'] or site_title
    vals['doc_path'] = cfg.doc_path.name
    (proc/'nbdev.yml').write_text(_nbdev_yml.format(**vals), encoding='utf-8')
    contents = sidebar_contents(pages)
    (proc/'sidebar.yml').write_text(yaml.safe_dump({'website': {'sidebar': {'contents': contents}}},
                                                   allow_unicode=True, sort_keys=False), encoding='utf-8')


# ------------------------------------------------------------------------------------------------ 2a. render: Quarto
def render_quarto(proc, out):
    "Render `proc` with Quarto, as `nbdev-docs` does after processing (nbdev's parallel renderer, its nav fix)"
    from nbdev.quarto import _fix_quarto_nav
    from nbdev.quarto_render import render_quarto as nbdev_render
    tmp_out = Path(proc)/'_site_out'
    nbdev_render(proc, tmp_out, n_workers=os.cpu_count() or 1)
    if out.exists(): shutil.rmtree(out)
    shutil.move(str(tmp_out), str(out))
    _fix_quarto_nav(out)


# --------------------------------------------------------------------------------------------- 2b. render: nbconvert
WIDGET_VIEW = 'application/vnd.jupyter.widget-view+json'
_CELL_KEYS = {'cell_type', 'id', 'metadata', 'source', 'outputs', 'execution_count', 'attachments'}
_DIRECTIVE_RE = re.compile(r'^\s*#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')
_FENCE_RE = re.compile(r'^(:{3,})\s*(?:\{([^}]*)\}|([\w-]+))?\s*$')


def _attrs_html(attrs):
    'Pandoc attributes `{.cls #id key="v"}` as HTML attributes'
    classes, out = [], []
    for tok in re.findall(r'[.#][\w-]+|[\w-]+=(?:"[^"]*"|\S+)', attrs or ''):
        if tok[0] == '.': classes.append(tok[1:])
        elif tok[0] == '#': out.append(f'id="{html.escape(tok[1:])}"')
        else:
            k, v = tok.split('=', 1)
            out.append(f'{k}="{html.escape(v.strip(chr(34)))}"')
    if classes: out.insert(0, f'class="{" ".join(classes)}"')
    return (' ' + ' '.join(out)) if out else ''


def pandoc_to_commonmark(md, href_map, here=''):
    """The Quarto/pandoc markdown that nbdev writes, in a form nbconvert's markdown renderer shows right: fenced divs
    (`::: {.callout-note}`) become <div>s, links with attributes become <a> tags, links to notebooks point at pages
    (`href_map`: `Page.name` -> its HTML file from the site root; `here`: the folder of the page that holds the links)"""
    def link(m):
        text, url, attrs = m.group(1), m.group(2), m.group(3)
        target, t = link_target(url, here), urlsplit(url)
        if target in href_map:
            url = relative_url(href_map[target], here) + (f'#{t.fragment}' if t.fragment else '')
        if attrs: return f'<a href="{html.escape(url)}"{_attrs_html(attrs[1:-1])}>{text}</a>'
        return f'[{text}]({url})'
    lines = []
    for line in _LINK_RE.sub(link, md).split('\n'):
        m = _FENCE_RE.match(line)
        if m and (m.group(2) or m.group(3)):
            cls = _attrs_html(m.group(2)) if m.group(2) else f' class="{m.group(3)}"'
            lines += ['', f'<div{cls}>', '']
        elif m: lines += ['', '</div>', '']
        else: lines.append(line)
    return '\n'.join(lines)


def _option_value(v):
    "A cell option's value as Quarto reads it (YAML): `\"Checks\"` -> Checks"
    try: return str(yaml.safe_load(v)) if v else ''
    except yaml.YAMLError: return v


def apply_quarto_directives(nb):
    """Quarto's cell options for the nbconvert template: `echo: false` hides the code, `output: false` the output,
    `include: false` both; `code-fold: true` folds the code into a <details> (its summary `code-summary`); `fig-alt` is
    the alt text of the cell's images"""
    keep = []
    for cell in nb.cells:
        if cell.cell_type == 'code':
            lines, opts = cell.source.split('\n'), {}
            while lines and _DIRECTIVE_RE.match(lines[0]):
                k, v = _DIRECTIVE_RE.match(lines.pop(0)).groups()
                opts[k] = _option_value(v)
            cell.source = '\n'.join(lines)
            tags = cell.metadata.setdefault('tags', [])
            low = {k: v.lower() for k, v in opts.items()}
            if low.get('include') == 'false': continue
            if low.get('echo') == 'false' or not cell.source.strip(): tags.append('dl-remove-input')
            if low.get('output') == 'false': tags.append('dl-remove-output')
            if low.get('code-fold') == 'true':
                tags.append('dl-fold')
                cell.metadata['dl_summary'] = opts.get('code-summary') or 'Code'
            if opts.get('fig-alt'): cell.metadata['dl_alt'] = opts['fig-alt']
        keep.append(cell)
    nb.cells = keep


def _md_page_as_notebook(path):
    "A markdown page as a notebook of one markdown cell (front matter kept in a raw cell), for nbconvert"
    import nbformat
    fm, body = split_frontmatter(path.read_text(encoding='utf-8'))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_raw_cell(dump_frontmatter(fm)), nbformat.v4.new_markdown_cell(body)]
    return nb


def _inline_md(text):
    "Markdown of one line (a title, a description) as inline HTML"
    from nbconvert.filters.markdown import markdown2html
    h = markdown2html(text).strip()
    return h[3:-4] if h.startswith('<p>') and h.endswith('</p>') and h.count('<p>') == 1 else h


_HEADING_ID_RE = re.compile(r'(<hr\s*/?>\s*)?(<h[1-6]\b[^>]*?\bid="([^"]*)"[^>]*>)(.*?</h[1-6]>)', re.S)


def api_anchors(page_html):
    """nbdev's doc links address a name's API docs as Quarto (pandoc) names its heading, in lower case
    (`lib/gradcheck.html#gradcheck`); nbconvert keeps the case (`<h3 id="GradCheck">`) and gives a section heading and
    the API docs of the same name one id. Here every id is unique (a repeated heading's is numbered, `Module-2`, its
    anchor link with it), and every heading whose id is a Python name gets its lower-case address too, where the page
    has no such id yet: first the API docs' headings (show_doc's: a rule, then the heading), then the others"""
    ids, seen = set(re.findall(r'\bid="([^"]*)"', page_html)), {}
    heads = list(_HEADING_ID_RE.finditer(page_html))
    renamed = []
    for m in heads:
        hid = m.group(3)
        seen[hid] = seen.get(hid, 0) + 1
        new = hid
        if seen[hid] > 1:
            k = seen[hid]
            while f'{hid}-{k}' in ids: k += 1
            new = f'{hid}-{k}'
            ids.add(new)
        renamed.append(new)
    alias = {}
    for api in (True, False):
        for m, hid in zip(heads, renamed):
            if bool(m.group(1)) != api or not re.fullmatch(r'[A-Za-z_][\w.]*', m.group(3)): continue
            low = m.group(3).lower()
            if low in ids: continue
            ids.add(low)
            alias[m.start()] = low
    out, pos = [], 0
    for m, hid in zip(heads, renamed):
        out.append(page_html[pos:m.start()])
        head, rest = m.group(2), m.group(4)
        if hid != m.group(3):
            head = head.replace(f'id="{m.group(3)}"', f'id="{hid}"', 1)
            rest = rest.replace(f'href="#{m.group(3)}"', f'href="#{hid}"', 1)
        span = f'<span id="{alias[m.start()]}"></span>' if m.start() in alias else ''
        out.append((m.group(1) or '') + head + span + rest)
        pos = m.end()
    out.append(page_html[pos:])
    return ''.join(out)


def top_navigation(pages):
    """The top bar's links: the course (front page), the first library page, the glossary, the contributor guide (the
    Quarto path's navbar in nbs/_quarto.yml lists the same)"""
    by_name = {p.name: p for p in pages}
    links = [('index', 'Course')] + [(p.name, 'Library') for p in pages if p.section][:1] + \
            [('glossary', 'Glossary'), ('contributing', 'Contributing')]
    return [dict(href=by_name[n].output, text=t, name=n) for n, t in links if n in by_name]


_TOC_HEADING_RE = re.compile(r'(<hr\s*/?>\s*)?<h([23]) id="([^"]+)">(.*?)</h\2>', re.S)


def page_toc(page_html):
    """The page's table of contents (its h2 and h3 sections, not the API docs' headings) where the template marks it
    (`<!--dl-toc-->`); no table for a page with fewer than two sections"""
    items = []
    for m in _TOC_HEADING_RE.finditer(page_html.split('<!--dl-toc-->', 1)[-1]):
        if m.group(1): continue                           # show_doc's heading: a rule, then the name
        text = re.sub(r'<a class="anchor-link".*?</a>', '', m.group(4), flags=re.S)
        text = re.sub(r'<[^>]+>', '', text).strip()
        if text: items.append(f'<li class="dl-toc-h{m.group(2)}"><a href="#{m.group(3)}">{text}</a></li>')
    toc = ''
    if len(items) >= 2:
        toc = ('<nav id="TOC" class="dl-toc" aria-labelledby="dl-toc-title"><h2 id="dl-toc-title" class="dl-toc-title">'
               'On this page</h2><ul>' + ''.join(items) + '</ul></nav>')
    return page_html.replace('<!--dl-toc-->', toc, 1)


def _nav_groups(nav):
    "The sidebar's entries in runs of one section each: [{'heading': '' or 'Library', 'items': [...]}, ...]"
    groups = []
    for item in nav:
        if not groups or groups[-1]['heading'] != item['section']: groups.append({'heading': item['section'], 'items': []})
        groups[-1]['items'].append(item)
    return groups


def render_nbconvert(proc, out, pages, site_title):
    "Render every processed page of `proc` to HTML in `out` with nbconvert: the same names and order as Quarto's site"
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    c = Config()
    c.HTMLExporter.extra_template_basedirs = [str(TEMPLATES)]
    c.HTMLExporter.template_name = 'dlcourse'
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    # the CDN addresses Quarto uses; the offline step points them at the vendored copies (as on the Quarto path)
    c.HTMLExporter.require_js_url = 'https://cdn.jsdelivr.net/npm/requirejs@2.3.6/require.min.js'
    c.HTMLExporter.mathjax_url = 'https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml-full.js'
    c.HTMLExporter.jupyter_widgets_base_url = 'https://cdn.jsdelivr.net/npm/'
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_input_tags = {'dl-remove-input'}
    c.TagRemovePreprocessor.remove_all_outputs_tags = {'dl-remove-output'}
    exporter = HTMLExporter(config=c)

    out.mkdir(parents=True, exist_ok=True)
    href_map = {p.name: p.output for p in pages}
    topnav = top_navigation(pages)
    for i, page in enumerate(pages):
        t0 = time.perf_counter()
        here = posixpath.dirname(page.name)
        src = Path(proc)/page.rel
        nb = nbformat.read(src, as_version=4) if src.suffix == '.ipynb' else _md_page_as_notebook(src)
        if nb.cells and nb.cells[0].cell_type == 'raw' and split_frontmatter(nb.cells[0].source)[0]: nb.cells.pop(0)
        for cell in nb.cells:            # nbdev's processors leave marks (`has_sd`) that nbformat refuses
            for k in set(cell) - _CELL_KEYS: del cell[k]
            cell.metadata.pop('execution', None)   # timings, in a form nbformat's schema refuses
        apply_quarto_directives(nb)
        for cell in nb.cells:
            if cell.cell_type == 'markdown': cell.source = pandoc_to_commonmark(cell.source, href_map, here)
            for o in cell.get('outputs', []):
                md = o.get('data', {}).get('text/markdown')
                if md is not None:
                    o['data']['text/markdown'] = pandoc_to_commonmark(md if isinstance(md, str) else ''.join(md), href_map,
                                                                      here)
        mimes = {m for c in nb.cells for o in c.get('outputs', []) for m in o.get('data', {})}
        has_widgets = WIDGET_VIEW in mimes
        if not has_widgets: nb.metadata.pop('widgets', None)     # as Quarto: the widget runtime only where a view is
        nb.metadata['title'] = f'{page.title} – {site_title}' if page.name != 'index' else site_title
        nav = [dict(href=p.output, text=html.escape(p.nav_text), subtitle=html.escape(p.subtitle), active=p is page,
                    section=html.escape(p.section)) for p in pages]
        dl = dict(root=page.root, site_title=html.escape(site_title), nav=nav, nav_groups=_nav_groups(nav),
                  topnav=[dict(t, active=t['href'] == page.output) for t in topnav],
                  title=_inline_md(page.title),
                  widgets=has_widgets, requirejs=has_widgets or bool(mimes & {'application/javascript', 'text/html'}),
                  subtitle=html.escape(page.subtitle), description=_inline_md(page.description) if page.description else '',
                  prev=nav[i - 1] if i > 0 else None, next=nav[i + 1] if i + 1 < len(nav) else None)
        body, _ = exporter.from_notebook_node(nb, resources={'dlsite': dl, 'metadata': {'name': page.title}})
        (out/page.output).parent.mkdir(parents=True, exist_ok=True)
        (out/page.output).write_text(api_anchors(page_toc(body)), encoding='utf-8')
        log(f'  rendered  {page.rel:28} -> {page.output:24} {time.perf_counter() - t0:5.1f} s')
    # the pages' own files: the course stylesheet, images the markdown links to
    sources = {p.rel for p in pages}
    for p in Path(proc).rglob('*'):
        rel = p.relative_to(proc)
        if p.is_file() and rel.as_posix() not in sources and not (len(rel.parts) == 1 and p.suffix in ('.yml', '.yaml')):
            (out/rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, out/rel)
    (out/'site_libs'/'dlcourse').mkdir(parents=True, exist_ok=True)
    shutil.copy2(TEMPLATES/'dlcourse'/'site.css', out/'site_libs'/'dlcourse'/'site.css')


# -------------------------------------------------------------------------------------------------------- 3. offline
# What the site serves itself: npm package file -> its place under site_libs/vendor/
VENDOR_FILES = {
    'requirejs/require.js': 'requirejs/require.js',
    'jquery/dist/jquery.min.js': 'jquery/jquery.min.js',
    '@jupyter-widgets/html-manager/dist/embed-amd.js': '@jupyter-widgets/html-manager/dist/embed-amd.js',
    'anywidget/dist/index.js': 'anywidget/index.js',
}
VENDOR_TREES = {  # whole folders: fonts the html-manager loads, MathJax's components that load on demand
    '@jupyter-widgets/html-manager/dist': ('@jupyter-widgets/html-manager/dist', ('*.woff', '*.woff2', '*.ttf', '*.eot', '*.svg')),
    'mathjax/es5': ('mathjax/es5', ('*',)),
}
# CDN addresses (path after the host) -> vendored file; {0} is the regex group
CDN_RULES = [
    (re.compile(r'(?:^|/)(?:requirejs@[^/]*|require\.js/[^/]+)/require(?:\.min)?\.js$'), 'requirejs/require.js'),
    (re.compile(r'(?:^|/)(?:jquery@[^/]*/dist|jquery/[^/]+)/jquery(?:\.min)?\.js$'), 'jquery/jquery.min.js'),
    (re.compile(r'(?:^|/)@jupyter-widgets/html-manager@[^/]*/dist/embed-amd\.js$'),
     '@jupyter-widgets/html-manager/dist/embed-amd.js'),
    (re.compile(r'(?:^|/)(?:mathjax@[^/]*|mathjax/[^/]+)/(?:es5/)?(.+?)(?:\.min)?\.js$'), 'mathjax/es5/{0}.js'),
]
WIDGETS_JS = 'dlcourse-widgets.js'
_WIDGETS_JS_TEXT = r"""// Written by tools/docs/docsite.py. Runs after require.js and before @jupyter-widgets/html-manager.
(function () {
  // 1. Tell require.js where the vendored widget front ends are, so that widgets render with no internet.
  var here = document.currentScript.src.replace(/[^/]*$/, '');   // .../site_libs/vendor/
  var dist = here + '@jupyter-widgets/html-manager/dist/';
  var paths = {
    // anywidget's front end (AMD): its widgets carry their own ES module code (_esm) in the saved state
    'anywidget': here + 'anywidget/index'
  };
  // embed-amd.js defines these modules itself; webpack finds its font files next to a module's address, so each
  // address must lie in html-manager's dist/ folder, where the fonts are
  ['html-manager', 'html-manager/dist/libembed-amd', 'base', 'base7', 'controls', 'controls7', 'output'].forEach(
    function (m) { paths['@jupyter-widgets/' + m] = dist + m.split('/').pop(); });
  window.requirejs.config({ paths: paths });

  // 2. The widgets typeset their LaTeX labels with MathJax 2's MathJax.Hub.Queue; the site loads MathJax 3. Give
  //    MathJax 3 that one call, chained on MathJax's own promise as its documentation advises. The html-manager renders
  //    on the load event, after this listener: by then the (async) MathJax script has run.
  function addHub() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.startup || typeof mj.typesetPromise !== 'function') return;
    mj.Hub = {
      Queue: function () {
        Array.prototype.forEach.call(arguments, function (job) {
          if (!Array.isArray(job) || job[0] !== 'Typeset') return;
          var elements = job[2] ? [job[2]] : undefined;
          mj.startup.promise = mj.startup.promise
            .then(function () { return mj.typesetPromise(elements); })
            .catch(function (err) { console.warn('MathJax could not typeset a widget label', err); });
        });
      }
    };
  }
  window.addEventListener('load', addHub);
})();
"""
_TAG_RE = re.compile(r'<(script|link|img|iframe|source|video|audio|embed|object)\b[^>]*>', re.IGNORECASE)
_ATTR_RE = re.compile(r'''([\w:-]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+))?''')
_LOADING_ATTRS = ('src', 'href', 'data', 'poster', 'srcset')
_CSS_IMPORT_RE = re.compile(r'''@import\s+(?:url\()?\s*["']?((?:https?:)?//[^"')\s]+)["']?\s*\)?[^;]*;''')
_CSS_URL_RE = re.compile(r'''url\(\s*["']?((?:https?:)?//[^"')\s]+)["']?\s*\)''')


def _is_external(url):
    return bool(re.match(r'^(?:https?:)?//', url.strip()))


def ensure_node_modules(node_modules=NODE_MODULES):
    "Install the pinned browser libraries with `npm ci` when node_modules is missing or older than the lockfile"
    node_modules = Path(node_modules)
    lock, stamp = node_modules.parent/'package-lock.json', node_modules/'.package-lock.json'
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime: return node_modules
    npm = shutil.which('npm')
    if not npm: raise BuildError('npm not found: the site vendors its browser libraries with `npm ci` (apt-get install -y npm)')
    log(f'npm ci in {node_modules.parent} (the browser libraries the site serves itself)')
    subprocess.run([npm, 'ci', '--no-audit', '--no-fund', '--loglevel=error'], cwd=node_modules.parent, check=True)
    return node_modules


def vendor_source(node_modules=NODE_MODULES):
    "Check that `npm ci` has installed the pinned packages; return their folder"
    missing = [f for f in list(VENDOR_FILES) + list(VENDOR_TREES) if not (Path(node_modules)/f).exists()]
    if missing:
        raise BuildError(f'the vendored browser libraries are not installed ({", ".join(missing)} missing in '
                         f'{node_modules}): run `npm ci --prefix tools/docs` (tools/docs/build does it for you)')
    return Path(node_modules)


def copy_vendor(site, node_modules=NODE_MODULES):
    "Copy the pinned browser libraries into `site`/site_libs/vendor"
    src, dest = vendor_source(node_modules), Path(site)/VENDOR_DIR
    if dest.exists(): shutil.rmtree(dest)
    for s, d in VENDOR_FILES.items():
        (dest/d).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src/s, dest/d)
    for s, (d, patterns) in VENDOR_TREES.items():
        files = {f for pat in patterns for f in (src/s).rglob(pat) if f.is_file()}
        for f in sorted(files):
            (dest/d/f.relative_to(src/s)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest/d/f.relative_to(src/s))
    (dest/WIDGETS_JS).write_text(_WIDGETS_JS_TEXT, encoding='utf-8')
    return dest


def vendored_path(url, vendor_root):
    "The vendored file (relative to site_libs/vendor) that replaces CDN address `url`, or None"
    path = urlsplit(url if not url.startswith('//') else 'https:' + url).path
    for rule, target in CDN_RULES:
        m = rule.search(path)
        if m:
            rel = target.format(*m.groups())
            if (vendor_root/rel).is_file(): return rel
    return None


def _parse_tag(tag):
    name = re.match(r'<(\w+)', tag).group(1)
    attrs = [(k, v[1:-1] if v and v[0] in '"\'' else v) for k, v in _ATTR_RE.findall(tag[len(name) + 1:].rstrip('/>'))]
    return name, attrs


def _build_tag(name, attrs, self_closing):
    "A tag from its attributes, values as they were written (already HTML-escaped); empty ones stay bare (async)"
    parts = [name] + [k if not v else f'{k}="{v.replace(chr(34), "&quot;")}"' for k, v in attrs]
    return '<' + ' '.join(parts) + (' />' if self_closing else '>')


def offline_page(path, site, vendor_root):
    "Point every CDN tag of one page at the vendored copy; return the external loads that remain (should be none)"
    text = path.read_text(encoding='utf-8')
    depth = len(path.relative_to(site).parts) - 1
    to_root = '../' * depth
    remaining, site_pages = [], {p.relative_to(site).as_posix() for p in Path(site).rglob('*.html')}

    def tag_sub(m):
        tag = m.group(0)
        name, attrs = _parse_tag(tag)
        d = dict((k.lower(), v) for k, v in attrs)
        lname = name.lower()
        for key in _LOADING_ATTRS:
            url = d.get(key)
            if url is None or not _is_external(url): continue
            if lname == 'link' and not set((d.get('rel') or '').lower().split()) & {'stylesheet', 'preload', 'modulepreload', 'icon', 'prefetch'}:
                continue
            rel = vendored_path(url, vendor_root) if lname in ('script', 'link') and key in ('src', 'href') else None
            if rel is None:
                remaining.append(f'<{lname} {key}="{url}">')
                continue
            attrs = [(k, v) for k, v in attrs if k.lower() not in ('integrity', 'crossorigin')]
            attrs = [(k, f'{to_root}{VENDOR_DIR}/{rel}' if k.lower() == key else v) for k, v in attrs]
            if rel.endswith('html-manager/dist/embed-amd.js'):
                # unknown widget modules fall back to a folder of this site, never to a CDN
                attrs = [(k, v) for k, v in attrs if k.lower() != 'data-jupyter-widgets-cdn']
                attrs.append(('data-jupyter-widgets-cdn', f'{to_root}{VENDOR_DIR}/npm/'))
                pre = f'<script src="{to_root}{VENDOR_DIR}/{WIDGETS_JS}"></script>\n'
                return pre + _build_tag(name, attrs, tag.endswith('/>'))
            return _build_tag(name, attrs, tag.endswith('/>'))
        return tag

    text = _TAG_RE.sub(tag_sub, text)
    text = _fix_css_imports(text, remaining)

    # nbdev writes doc links from the site root (`/core.html#Module`): make them relative, so the site works anywhere
    def href_sub(m):
        url = m.group(2)
        p = urlsplit(url)
        if p.path.lstrip('/') in site_pages: return f'{m.group(1)}{to_root}{url.lstrip("/")}'
        return m.group(0)
    text = re.sub(r'''(<a\b[^>]*?\bhref=["'])(/(?!/)[^"'#?]*\.html(?:#[^"']*)?)''', href_sub, text)
    path.write_text(text, encoding='utf-8')
    return remaining


def _fix_css_imports(css, remaining):
    "Drop CSS @imports of web fonts from outside (the text falls back to local fonts); record any other external url()"
    css = _CSS_IMPORT_RE.sub(lambda m: f'/* offline: dropped @import of {m.group(1)} */', css)
    remaining.extend(f'url({u})' for u in _CSS_URL_RE.findall(css))
    return css


def make_offline(site, node_modules=NODE_MODULES):
    "The offline step of both paths: vendor the libraries, rewrite the tags, fail if anything external is left"
    site = Path(site)
    vendor_root = copy_vendor(site, node_modules)
    problems, n_pages = [], 0
    for page in sorted(site.rglob('*.html')):
        if vendor_root in page.parents: continue
        n_pages += 1
        problems += [f'{page.relative_to(site)}: {r}' for r in offline_page(page, site, vendor_root)]
    for css in sorted(site.rglob('*.css')):
        if vendor_root in css.parents: continue
        remaining = []
        text = _fix_css_imports(css.read_text(encoding='utf-8'), remaining)
        css.write_text(text, encoding='utf-8')
        problems += [f'{css.relative_to(site)}: {r}' for r in remaining]
    if problems:
        raise BuildError('these pages still load from outside the site; vendor the library (tools/docs/package.json, '
                         'VENDOR_FILES and CDN_RULES in tools/docs/docsite.py):\n  ' + '\n  '.join(problems))
    log(f'offline: {n_pages} pages, libraries in {vendor_root.relative_to(site)}')
    return n_pages


# ------------------------------------------------------------------------------------------------------------- build
def build(out=ROOT/'_docs', nbs=ROOT/'nbs', proc=ROOT/'_proc', engine='auto', chapters_file=CHAPTERS_FILE,
          node_modules=NODE_MODULES):
    "Build the site into `out`; return its pages in sidebar order"
    t0 = time.perf_counter()
    out, nbs, proc = Path(out).resolve(), Path(nbs).resolve(), Path(proc).resolve()
    if engine == 'auto': engine = 'quarto' if shutil.which('quarto') else 'nbconvert'
    if engine == 'quarto' and not shutil.which('quarto'): raise BuildError('--engine quarto: `quarto` is not on PATH')
    if Path(node_modules) == NODE_MODULES: ensure_node_modules(node_modules)
    vendor_source(node_modules)      # fail before the slow part
    settings = load_chapters(chapters_file)
    pages = collect_pages(nbs, settings['library'])
    if not pages: raise BuildError(f'no notebooks or markdown pages in {nbs}')
    log(f'building {len(pages)} pages from {nbs} with {engine}')
    for term, where in glossary_missing(nbs).items():
        log(f'  note: {", ".join(where)} introduces *{term}*, which nbs/glossary.md lacks')
    with _cwd(ROOT):                 # nbdev reads its settings from the project's pyproject.toml
        process(pages, nbs, proc, settings['site_title'], settings['chapters'])
        if out.exists(): shutil.rmtree(out)
        if engine == 'quarto': render_quarto(proc, out)
        else: render_nbconvert(proc, out, pages, settings['site_title'])
    for d in finish.finish(out, pages, nbs):
        log(f'  note: {d}: no such anchor on that page, the link leads to the page')
    make_offline(out, node_modules)
    try: finish.search_index(out, node_modules)
    except (OSError, RuntimeError) as e: raise BuildError(f'the search index: {e}') from e
    log(f'search: Pagefind index in {out/"pagefind"}')
    (out/'.nojekyll').touch()
    log(f'site in {out} ({len(pages)} pages, {time.perf_counter() - t0:.1f} s)')
    return pages


def serve(directory=ROOT/'_docs', port=8000):
    "Serve the built site on 127.0.0.1 (python -m http.server)"
    directory = Path(directory)
    if not (directory/'index.html').exists(): raise BuildError(f'{directory} holds no site: run tools/docs/build first')
    log(f'serving {directory} at http://127.0.0.1:{port}/ (Ctrl-C stops)')
    return subprocess.call([sys.executable, '-m', 'http.server', '--bind', '127.0.0.1', '--directory', str(directory),
                            str(port)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    b = sub.add_parser('build', help='build the site')
    b.add_argument('--engine', choices=['auto', 'quarto', 'nbconvert'], default='auto',
                   help='auto: Quarto where `quarto` is on PATH, else nbconvert')
    b.add_argument('--out', default=str(ROOT/'_docs'), help='output folder (default _docs)')
    b.add_argument('--nbs', default=str(ROOT/'nbs'), help='the notebooks (default nbs)')
    b.add_argument('--proc', default=str(ROOT/'_proc'), help='folder for the processed notebooks (default _proc)')
    b.add_argument('--chapters', default=str(CHAPTERS_FILE), help='the chapter titles (default tools/docs/chapters.yml)')
    o = sub.add_parser('offline', help='only the offline step, on an already rendered site')
    o.add_argument('site')
    s = sub.add_parser('serve', help='serve the built site on 127.0.0.1')
    s.add_argument('--port', type=int, default=8000)
    s.add_argument('--dir', default=str(ROOT/'_docs'))
    a = ap.parse_args(argv)
    try:
        if a.cmd == 'build': build(out=a.out, nbs=a.nbs, proc=a.proc, engine=a.engine, chapters_file=a.chapters)
        elif a.cmd == 'offline': make_offline(a.site)
        else: return serve(a.dir, a.port)
    except BuildError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
