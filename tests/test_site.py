"""Browser tests of the documentation website: the course's pages, and saved widget state, offline.

The course site is built once per session (tools/docs/docsite.py, into a temporary folder, not _docs/), served on
127.0.0.1 and opened page by page in headless Debian Chromium, driven by Playwright; every request that is not to
127.0.0.1 is aborted, so a page that still needs the internet fails. A second, small site built from notebooks that this
file writes holds saved widget state (ipywidgets and an anywidget): its widgets must render, and stay interactive,
without a kernel and without the network.

Screenshots of every page go to `_docs_screenshots/` (`course/`, `widgets/`) at the repository root, or to
$DLCOURSE_SCREENSHOTS. Needs Playwright (pip), Chromium (`apt-get install chromium`, at /usr/bin/chromium or
$DLCOURSE_CHROMIUM) and npm (for `npm ci` in tools/docs): under the test command a missing one is an error.
"""
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import unicodedata
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from conftest import REQUIRE_ALL, require

yaml = require('yaml', 'docs')       # the site build's own dependencies (docsite imports yaml, and nbdev as it builds)
require('nbdev', 'docs')
import docsite  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = os.environ.get('DLCOURSE_CHROMIUM', '/usr/bin/chromium')
LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
               '--disable-component-update', '--disable-sync', '--no-first-run',
               '--disable-dev-shm-usage']   # containers often have a small /dev/shm: long pages crash Chromium there
SCREENSHOTS = Path(os.environ.get('DLCOURSE_SCREENSHOTS', ROOT/'_docs_screenshots'))
NBS = ROOT/'nbs'
_SETTINGS = yaml.safe_load(docsite.CHAPTERS_FILE.read_text(encoding='utf-8'))
CHAPTERS, LIBRARY = _SETTINGS['chapters'], _SETTINGS.get('library') or []
LIB_NOTEBOOKS = sorted(p.stem for p in (NBS/'lib').glob('*.ipynb'))     # nbs/lib: the library notebooks, pages lib/*.html
COURSE_PAGES = [p.name for p in docsite.collect_pages(NBS)]            # lib pages as 'lib/gradcheck'
SIDEBAR_LINKS = 'nav#dl-sidebar a.dl-nav-link, #quarto-sidebar a.sidebar-link'
# the heading of the sidebar section that holds a link ('' outside one): the nbconvert template's, or Quarto's
SIDEBAR_SECTION_HEADINGS = '.dl-nav-section > .dl-nav-heading, .sidebar-item-section > .sidebar-item-container .menu-text'
PAGER_LINKS = 'nav.dl-pager a.dl-prev, nav.dl-pager a.dl-next, .page-navigation .nav-page a'


def _missing(what):
    "A missing tool: an error under the test command (DLCOURSE_REQUIRE_ALL=1), a skip by hand"
    if REQUIRE_ALL: pytest.fail(what, pytrace=False)
    pytest.skip(what)


def html_name(nb_name):
    """The page nbdev makes of a notebook (its path in nbs/ without `.ipynb`), from the site root, derived independently
    of the build: 01_sigmoid_neuron -> sigmoid_neuron.html, lib/gradcheck -> lib/gradcheck.html"""
    folder, _, name = nb_name.rpartition('/')
    return (folder + '/' if folder else '') + re.sub(r'^\d+[a-z]?_', '', name) + '.html'


# ---------------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope='session')
def node_modules():
    "The pinned browser libraries, installed with `npm ci` if needed"
    try: return docsite.ensure_node_modules()
    except docsite.BuildError as e: _missing(str(e))


def _build(out, proc, *args):
    cmd = [sys.executable, str(ROOT/'tools'/'docs'/'docsite.py'), 'build', '--out', str(out), '--proc', str(proc), *args]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode: pytest.fail(f'site build failed:\n{res.stdout[-5000:]}\n{res.stderr[-5000:]}', pytrace=False)
    return out


@pytest.fixture(scope='session')
def course_site(tmp_path_factory, node_modules):
    "The course site, built from nbs/ once per session"
    tmp = tmp_path_factory.mktemp('course')
    return _build(tmp/'site', tmp/'proc')


# The anywidget of the widget fixture: its front end travels in the saved state (`_esm`) and runs without a kernel
COUNTER_ESM = """
function render({ model, el }) {
  const button = document.createElement('button');
  button.className = 'dl-test-counter';
  const show = () => { button.textContent = `count is ${model.get('value')}`; };
  button.addEventListener('click', () => { model.set('value', model.get('value') + 1); model.save_changes(); });
  model.on('change:value', show);
  show();
  el.appendChild(button);
}
export default { render };
"""


def write_widget_notebooks(nbs):
    "A two-page course whose chapter holds saved widget state: ipywidgets linked in the browser, and an anywidget"
    nbformat, widgets = require('nbformat'), require('ipywidgets')
    anywidget, traitlets = require('anywidget'), require('traitlets')

    class Counter(anywidget.AnyWidget):
        _esm = COUNTER_ESM
        value = traitlets.Int(0).tag(sync=True)

    from ipywidgets.embed import dependency_state
    slider = widgets.IntSlider(value=3, min=0, max=10, description='n')
    text = widgets.IntText(value=3, description='also n')
    link = widgets.jslink((slider, 'value'), (text, 'value'))             # interaction in the browser, no kernel
    box = widgets.VBox([slider, text])
    button = widgets.Button(description='ok', icon='check')               # an icon: the html-manager's font files
    counter = Counter(value=2)
    shown = (box, button, counter)
    state = {'version_major': 2, 'version_minor': 0, 'state': dependency_state([*shown, link], drop_defaults=False)}
    views = {w: {'version_major': 2, 'version_minor': 0, 'model_id': w.model_id} for w in shown}
    for w in (*shown, link, slider, text): w.close()                     # leave no widget behind in this process

    def view(w):
        return nbformat.v4.new_output('display_data', data={
            'text/plain': type(w).__name__, 'application/vnd.jupyter.widget-view+json': views[w]})

    v4 = nbformat.v4
    index = v4.new_notebook(cells=[v4.new_markdown_cell('# Widget fixture\n\n> A site built by tests/test_site.py'),
                                   v4.new_markdown_cell('The chapter shows widgets from saved state.')])
    chapter = v4.new_notebook(cells=[
        v4.new_markdown_cell('# Widgets without a kernel\n\n> Saved widget state, rendered by the html-manager'),
        v4.new_markdown_cell('A formula on a page with widgets: $\\sigma(x) = 1/(1+e^{-x})$ and\n\n$$y = f(z).$$'),
        v4.new_code_cell('box', execution_count=1, outputs=[view(box)]),
        v4.new_code_cell('button', execution_count=2, outputs=[view(button)]),
        v4.new_code_cell('counter', execution_count=3, outputs=[view(counter)]),
        # an exported function: nbdev's show_doc renders its API docs on the page
        v4.new_code_cell('#| export\ndef double(x):\n    "Twice `x`, the fixture\'s API"\n    return 2 * x', execution_count=4),
        # a cell that mixes an import with code: its saved output must stay, not be re-run by the docs build
        v4.new_code_cell('import random\nprint(random.random())', execution_count=5,
                         outputs=[v4.new_output('stream', name='stdout', text='saved output, never re-executed\n')]),
    ])
    chapter.metadata['widgets'] = {'application/vnd.jupyter.widget-state+json': state}
    for nb in (index, chapter): nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nbs.mkdir(parents=True)
    nbformat.write(index, nbs/'index.ipynb')
    nbformat.write(chapter, nbs/'01_widgets.ipynb')
    shutil.copy2(NBS/'styles.css', nbs/'styles.css')


@pytest.fixture(scope='session')
def widget_site(tmp_path_factory, node_modules):
    "A temporary site whose chapter holds saved ipywidgets and anywidget state (not part of the course)"
    tmp = tmp_path_factory.mktemp('widgets')
    write_widget_notebooks(tmp/'nbs')
    (tmp/'chapters.yml').write_text('site_title: widget fixture\nchapters:\n  01_widgets: Widgets ohne Kernel\n',
                                    encoding='utf-8')
    return _build(tmp/'site', tmp/'proc', '--nbs', str(tmp/'nbs'), '--chapters', str(tmp/'chapters.yml'))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


@pytest.fixture(scope='session')
def serve():
    "Serve folders on 127.0.0.1 (a free port each) for the session; returns the base URL"
    servers = []

    def start(directory):
        srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_QuietHandler, directory=str(directory)))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f'http://127.0.0.1:{srv.server_address[1]}/'
    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope='session')
def browser():
    "Headless Debian Chromium, driven by Playwright (never a browser Playwright downloads)"
    sync_api = require('playwright.sync_api')
    if not Path(CHROMIUM).exists():
        _missing(f'Chromium not found at {CHROMIUM}: `apt-get install -y chromium` (Debian), or set DLCOURSE_CHROMIUM')
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield b
        b.close()


# ------------------------------------------------------------------------------------------------------ visiting
WAIT_JS = """async () => {
  // MathJax typesets asynchronously; the html-manager renders widgets after the page's load event
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
  const t0 = Date.now();
  while (views.length && Date.now() - t0 < 15000) {
    const done = [...views].every(s => s.previousElementSibling && s.previousElementSibling.classList.contains('widget-subarea')
                                       && s.previousElementSibling.children.length > 0);
    if (done) break;
    await new Promise(r => setTimeout(r, 100));
  }
}"""
STATS_JS = """() => {
  const sidebarLinks = [...document.querySelectorAll(arguments_selector)].filter(a => a.hasAttribute('href'));
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  const rendered = views.filter(s => s.previousElementSibling && s.previousElementSibling.classList.contains('widget-subarea')
                                     && s.previousElementSibling.children.length > 0);
  return {
    views: views.length, rendered: rendered.length,
    widget_errors: document.querySelectorAll('.jupyter-widgets-error-widget').length,
    math: document.querySelectorAll('mjx-container').length,
    math_errors: document.querySelectorAll('mjx-merror').length,
    subtitle: (document.querySelector('.subtitle') || {}).textContent || null,
    // the sidebar's pages, as paths from the server's root: wrong relative addresses on a page in lib/ show here
    sidebar: sidebarLinks.map(a => new URL(a.getAttribute('href'), location.href).pathname),
    sidebar_sections: sidebarLinks.map(a => {
      const section = a.closest('.dl-nav-section, .sidebar-item-section');
      const heading = section && section.querySelector(sections_selector);
      return heading ? heading.textContent.trim() : '';
    }),
    pager: [...document.querySelectorAll(pager_selector)].filter(a => a.hasAttribute('href'))
             .map(a => new URL(a.getAttribute('href'), location.href).pathname),
    stylesheets: [...document.styleSheets].filter(s => s.href).map(s => new URL(s.href).pathname),
  };
}"""


class Visit:
    "What one page did in the browser: failed or aborted requests, console errors, and what it rendered"
    def __init__(self, url): self.url, self.failed, self.errors, self.stats = url, [], [], {}


def visit(page, base, name, shot):
    "Open `name` under `base`, wait for MathJax and the widgets, take a full-page screenshot"
    v = Visit(base + name)
    page.on('console', lambda m: v.errors.append(f'console.{m.type}: {m.text}') if m.type == 'error' else None)
    page.on('pageerror', lambda e: v.errors.append(f'uncaught: {e}'))
    page.on('requestfailed', lambda r: v.failed.append(f'{r.url} ({r.failure})'))
    page.on('response', lambda r: v.failed.append(f'{r.url} (HTTP {r.status})') if r.status >= 400 else None)
    page.goto(v.url, wait_until='load')
    page.evaluate(WAIT_JS)
    page.wait_for_load_state('networkidle')
    v.stats = page.evaluate(STATS_JS.replace('arguments_selector', json.dumps(SIDEBAR_LINKS))
                            .replace('sections_selector', json.dumps(SIDEBAR_SECTION_HEADINGS))
                            .replace('pager_selector', json.dumps(PAGER_LINKS)))
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    return v


@pytest.fixture(scope='session')
def open_page(browser):
    "A fresh page (tab) whose requests outside 127.0.0.1 are aborted and recorded"
    contexts = []

    def make():
        ctx = browser.new_context(viewport={'width': 1280, 'height': 900}, service_workers='block')
        blocked = []

        def route(r):
            host = urlsplit(r.request.url).hostname
            if host == '127.0.0.1': return r.continue_()
            blocked.append(r.request.url)
            return r.abort()
        ctx.route('**/*', route)
        ctx.set_default_timeout(30000)
        contexts.append(ctx)
        page = ctx.new_page()
        page.blocked = blocked
        return page
    yield make
    for ctx in contexts: ctx.close()


def _visit_all(site, names, serve, open_page, shots):
    base = serve(site)
    out = {}
    for name in names:
        page = open_page()
        v = visit(page, base, name, shots/Path(name).with_suffix('.png'))
        v.failed += [f'{u} (aborted: not 127.0.0.1)' for u in page.blocked]
        out[name] = v
        page.close()
    return out


@pytest.fixture(scope='session')
def course_visits(open_page, course_site, serve):     # the browser first: fail fast without it
    "Every page of the course site, visited once per session: {html name from the site root (lib/gradcheck.html): Visit}"
    names = sorted(p.relative_to(course_site).as_posix() for p in course_site.rglob('*.html')
                   if 'site_libs' not in p.relative_to(course_site).parts)
    shots = SCREENSHOTS/'course'
    if shots.exists(): shutil.rmtree(shots)
    return _visit_all(course_site, names, serve, open_page, shots)


@pytest.fixture(scope='session')
def widget_visits(open_page, widget_site, serve):
    shots = SCREENSHOTS/'widgets'
    if shots.exists(): shutil.rmtree(shots)
    return _visit_all(widget_site, ['index.html', 'widgets.html'], serve, open_page, shots)


# ------------------------------------------------------------------------------------------------ the course site
def _expected_order():
    """Lecture order: the overview, the chapters as tools/docs/chapters.yml lists them (those that exist), the library
    notebooks of nbs/lib in the order of its `library` list, the rest"""
    existing = {p.stem for p in NBS.glob('*.ipynb')}
    chapters = [n for n in CHAPTERS if n in existing]
    library = [f'lib/{n}' for n in LIBRARY if n in LIB_NOTEBOOKS] + [f'lib/{n}' for n in LIB_NOTEBOOKS if n not in LIBRARY]
    others = sorted(p.stem for p in list(NBS.glob('*.ipynb')) + list(NBS.glob('*.md'))
                    if p.stem not in chapters and p.stem != 'index' and p.name[0] not in '._')
    return ['index'] + chapters + library + others


def test_chapters_file_lists_every_chapter_in_name_order():
    numbered = sorted(p.stem for p in NBS.glob('*.ipynb') if re.match(r'^\d', p.stem))
    missing = [n for n in numbered if n not in CHAPTERS]
    assert not missing, f'add the German lecture title of {missing} to tools/docs/chapters.yml'
    assert list(CHAPTERS) == sorted(CHAPTERS), 'tools/docs/chapters.yml must list the chapters in name (lecture) order'
    assert [p.name for p in docsite.collect_pages(NBS)] == _expected_order()


def test_chapters_file_lists_every_library_notebook():
    assert LIB_NOTEBOOKS, 'no library notebooks in nbs/lib'
    missing = [n for n in LIB_NOTEBOOKS if n not in LIBRARY]
    assert not missing, f'add {missing} to `library` in tools/docs/chapters.yml, where the sidebar lists it'
    assert len(set(LIBRARY)) == len(LIBRARY), 'a library notebook is listed twice in tools/docs/chapters.yml'


def test_every_page_is_built(course_site):
    built = sorted(p.relative_to(course_site).as_posix() for p in course_site.rglob('*.html')
                   if 'site_libs' not in p.relative_to(course_site).parts)
    assert built == sorted(html_name(n) for n in _expected_order())
    for n in LIB_NOTEBOOKS: assert (course_site/'lib'/f'{n}.html').is_file(), f'no page lib/{n}.html, where nbdev links'


@pytest.mark.parametrize('name', COURSE_PAGES)
def test_page_loads_offline(course_visits, name):
    "No failed or outside request, no console error: the page works with the network cut"
    v = course_visits[html_name(name)]
    assert not v.failed, f'{v.url}: failed requests:\n' + '\n'.join(v.failed)
    assert not v.errors, f'{v.url}: console errors:\n' + '\n'.join(v.errors)


@pytest.mark.parametrize('name', COURSE_PAGES)
def test_sidebar_in_lecture_order(course_visits, name):
    "The same sidebar on every page, its links right from the page's folder (lib/ too): the pages in lecture order"
    v = course_visits[html_name(name)]
    assert [h.lstrip('/') for h in v.stats['sidebar']] == [html_name(n) for n in _expected_order()]


@pytest.mark.parametrize('name', COURSE_PAGES)
def test_library_pages_under_their_heading(course_visits, name):
    "The sidebar lists the library notebooks together, under the heading Library, and nothing else there"
    v = course_visits[html_name(name)]
    sections = dict(zip((h.lstrip('/') for h in v.stats['sidebar']), v.stats['sidebar_sections']))
    assert sections == {html_name(n): ('Library' if n.startswith('lib/') else '') for n in _expected_order()}


@pytest.mark.parametrize('name', COURSE_PAGES)
def test_pager_links_the_neighbours(course_visits, name):
    "Previous and next lead to the neighbours in the sidebar, from the lessons into the library and back out"
    order = [html_name(n) for n in _expected_order()]
    i = order.index(html_name(name))
    want = ([order[i - 1]] if i > 0 else []) + ([order[i + 1]] if i + 1 < len(order) else [])
    assert [h.lstrip('/') for h in course_visits[html_name(name)].stats['pager']] == want


@pytest.mark.parametrize('name', COURSE_PAGES)
def test_stylesheets_load(course_visits, name):
    "The site's stylesheets load on every page (on a page in lib/ through ../): the course's styles.css among them"
    sheets = [h.lstrip('/') for h in course_visits[html_name(name)].stats['stylesheets']]
    assert 'styles.css' in sheets, sheets


@pytest.mark.parametrize('name', COURSE_PAGES)
def test_chapter_subtitle_is_the_german_lecture_title(course_visits, name):
    subtitle = (course_visits[html_name(name)].stats['subtitle'] or '').strip()
    if CHAPTERS.get(name): assert subtitle == CHAPTERS[name]
    elif name in CHAPTERS: assert not subtitle


def _has_math(name):
    src = next(p for suffix in ('.ipynb', '.md') if (p := NBS/f'{name}{suffix}').exists())
    text = src.read_text(encoding='utf-8')
    if src.suffix == '.ipynb':
        text = '\n'.join(''.join(c['source']) for c in json.loads(text)['cells'] if c['cell_type'] == 'markdown')
    return bool(re.search(r'\$[^$\s][^$]*\$', text))


@pytest.mark.parametrize('name', COURSE_PAGES)
def test_math_rendered(course_visits, name):
    "MathJax typesets every page whose prose has formulas, without TeX errors"
    stats = course_visits[html_name(name)].stats
    if _has_math(name): assert stats['math'] > 0, f'{name}: formulas in the notebook, no MathJax output on the page'
    assert stats['math_errors'] == 0


def test_some_page_has_math(course_visits):
    assert any(v.stats['math'] for v in course_visits.values())


@pytest.mark.parametrize('name', COURSE_PAGES)
def test_saved_widgets_render(course_visits, name):
    "Every widget view saved in a notebook renders on its page"
    s = course_visits[html_name(name)].stats
    assert s['rendered'] == s['views'] and s['widget_errors'] == 0, s


def test_api_docs_from_show_doc(course_site):
    "nbdev's show_doc output for exported names is on the pages (lesson 00 exports Module)"
    core = course_site/html_name('00_core')
    if not (NBS/'00_core.ipynb').exists(): pytest.skip('no lesson 00')
    text = core.read_text(encoding='utf-8')
    assert re.search(r'<h3[^>]*id="Module"', text) or 'id="module"' in text, 'no show_doc heading for Module'


def _site_links(site):
    "{page: [(href, the file it points at or None for the page itself, fragment)]} of every page's <a href>s in the site"
    out = {}
    for page in site.rglob('*.html'):
        if 'site_libs' in page.relative_to(site).parts: continue
        links = out.setdefault(page, [])
        for href in re.findall(r'<a\b[^>]*?\bhref="([^"]+)"', page.read_text(encoding='utf-8')):
            u = urlsplit(href)
            if u.scheme or u.netloc: continue
            # an address from the server's root (/core.html) resolves to no file: the site must work in any folder
            links.append((href, (page.parent/unquote(u.path)).resolve() if u.path else None, u.fragment))
    return out


_IDS = {}


def _ids(page):
    "The ids (and <a name>s) of an HTML page of the site"
    if page not in _IDS: _IDS[page] = set(re.findall(r'\b(?:id|name)="([^"]*)"', page.read_text(encoding='utf-8')))
    return _IDS[page]


def _nbdev_names():
    "{address nbdev links a name of the package to (lib/learner.html#learner.fit): the qualified name}, dlcourse/_modidx.py"
    from dlcourse._modidx import d
    return {url: sym for mod in d['syms'].values() for sym, (url, _) in mod.items()}


def test_internal_links_resolve(course_site):
    """Every link from one page of the site to another (or to a file of the site) points at a file that exists, and its
    anchor at an id on that page (`lib/gradcheck.html#grad_check`: the API docs of grad_check).

    nbdev links every name of the package, also the ones no page documents with show_doc: a method
    (`lib/learner.html#learner.fit`, the page documents the class) and a private helper (`exercises.html#_difference`).
    Such a link must reach its page and, for a method, the docs of its class there."""
    broken, site, nbdev = [], course_site.resolve(), _nbdev_names()
    for page, links in _site_links(site).items():
        for href, target, fragment in links:
            where = f'{page.relative_to(site).as_posix()}: {href}'
            target = target or page
            if not target.exists():
                broken.append(where)
                continue
            if not fragment or target.suffix != '.html': continue
            ids = _ids(target)
            if fragment in ids or unquote(fragment) in ids: continue
            sym = nbdev.get(f'{target.relative_to(site).as_posix()}#{fragment}', '')
            owner, _, member = fragment.rpartition('.')
            if sym and (member.startswith('_') or (owner and owner in ids)): continue   # undocumented; see above
            broken.append(where + '  (no such anchor)')
    assert not broken, 'broken links:\n' + '\n'.join(sorted(broken))


def test_lessons_link_into_the_library_pages(course_site):
    """The lessons' links to the library (nbdev's doc links of backticked names, `/lib/gradcheck.html#grad_check`) reach
    the library pages, from the lessons' folder, at the API docs of the name (test_internal_links_resolve checks them
    all); and the library pages link back to the lessons from their own folder"""
    site = course_site.resolve()
    links = _site_links(site)
    lib = site/'lib'
    into = {(p.relative_to(site).as_posix(), href) for p, ls in links.items() if p.parent == site
            for href, target, frag in ls if target and target.parent == lib and frag}
    for page, href in [('backprop.html', 'lib/gradcheck.html#grad_check'), ('widgets.html', 'lib/learner.html#learner.fit'),
                       ('convolution.html', 'lib/summary.html#summary')]:
        assert (page, href) in into, f'{page} does not link {href}: {sorted(into)}'
    for page, href in into:
        target = lib/urlsplit(href).path.split('/')[-1]
        frag = urlsplit(href).fragment
        assert frag in _ids(target) or frag.rpartition('.')[0] in _ids(target), f'{page}: {href}'
    back = {href for p in lib.glob('*.html') for href, target, _ in links[p] if target and target.parent == site}
    assert '../backprop.html' in back and '../index.html' in back, sorted(back)


def _de_key(term):
    return unicodedata.normalize('NFKD', term).encode('ascii', 'ignore').decode().lower()


def test_glossary_table():
    "The glossary: German, English, lesson; German terms unique and in alphabetical order (so it stays easy to extend)"
    rows = docsite.glossary_rows(NBS/'glossary.md')
    assert len(rows) >= 20 and all(len(r) == 3 and r[0] and r[1] for r in rows), rows
    german = [r[0] for r in rows]
    assert len(set(g.lower() for g in german)) == len(german), 'a German term appears twice'
    assert german == sorted(german, key=_de_key), 'keep nbs/glossary.md sorted by the German term'
    for term in ('Neuron', 'Gewicht', 'Aktivierungsfunktion', 'Lernrate', 'unbeobachtete Schicht',
                 'Credit-Assignment-Problem', 'Vorwärtsmeldung', 'Rückmeldung', 'Faltungsschicht'):
        assert term in german


def test_glossary_page(course_visits):
    v = course_visits['glossary.html']
    assert Path(v.stats['sidebar'][-1]).name == 'glossary.html'


# ------------------------------------------------------------------------------------------ widgets without a kernel
def test_widget_fixture_loads_offline(widget_visits):
    for v in widget_visits.values():
        assert not v.failed, f'{v.url}: failed requests:\n' + '\n'.join(v.failed)
        assert not v.errors, f'{v.url}: console errors:\n' + '\n'.join(v.errors)


def test_every_widget_view_renders(widget_visits):
    s = widget_visits['widgets.html'].stats
    assert s['views'] == 3 and s['rendered'] == 3 and s['widget_errors'] == 0, s
    assert s['math'] > 0 and s['math_errors'] == 0, 'MathJax beside require.js and the widgets'
    assert [Path(h).name for h in s['sidebar']] == ['index.html', 'widgets.html']
    assert s['subtitle'].strip() == 'Widgets ohne Kernel'


def test_saved_outputs_and_api_docs(widget_site):
    "The page shows the notebook's saved outputs (nothing is re-executed) and show_doc's docs of exported names"
    text = (widget_site/'widgets.html').read_text(encoding='utf-8')
    assert 'saved output, never re-executed' in text
    assert re.search(r'<h3[^>]*>double', text) and "the fixture's API" in text


def test_widgets_are_interactive_offline(open_page, widget_site, serve):
    "jslink-ed ipywidgets and an anywidget react in the browser, with no kernel and no network"
    page = open_page()
    v = visit(page, serve(widget_site), 'widgets.html', SCREENSHOTS/'widgets'/'widgets-before-clicks.png')
    assert v.stats['rendered'] == 3
    assert page.locator('.widget-slider').count() == 1
    assert page.locator('.widget-button .fa-check').count() == 1
    counter = page.locator('button.dl-test-counter')
    assert counter.inner_text() == 'count is 2'
    counter.click()
    counter.click()
    assert counter.inner_text() == 'count is 4'
    box = page.locator('.widget-text input')
    box.fill('7')
    box.press('Enter')
    page.wait_for_function("() => document.querySelector('.widget-readout').textContent.trim() === '7'", timeout=5000)
    page.wait_for_load_state('networkidle')
    page.screenshot(path=str(SCREENSHOTS/'widgets'/'widgets-after-clicks.png'), full_page=True)
    fonts_ok = page.evaluate("() => document.fonts.check('900 16px \"Font Awesome 5 Free\"')")
    assert fonts_ok, 'the icon font of the html-manager did not load'
    assert not (v.failed + [f'{u} (aborted)' for u in page.blocked]), v.failed
    assert not v.errors, v.errors
    page.close()


def test_vendored_widget_front_ends_match_python(node_modules):
    "The site's anywidget and html-manager speak the protocol of the Python packages that saved the widget state"
    ipywidgets, anywidget = require('ipywidgets'), require('anywidget')

    def version(pkg): return json.loads((node_modules/pkg/'package.json').read_text(encoding='utf-8'))['version']
    assert version('anywidget').split('.')[:2] == anywidget.__version__.split('.')[:2], \
        'update anywidget in tools/docs/package.json (npm install --prefix tools/docs anywidget@VERSION) to the Python one'
    assert ipywidgets.__version__.startswith('8.') and version('@jupyter-widgets/html-manager').startswith('1.')


# ----------------------------------------------------------------------- the offline step, for both render paths
QUARTO_HEAD = """<!DOCTYPE html><html><head>
<script src="https://cdn.jsdelivr.net/npm/requirejs@2.3.6/require.min.js" integrity="sha384-abc" crossorigin="anonymous"></script>
<script src="https://cdn.jsdelivr.net/npm/jquery@3.5.1/dist/jquery.min.js" integrity="sha384-def" crossorigin="anonymous" data-relocate-top="true"></script>
<script type="application/javascript">define('jquery', [],function() {return window.jQuery;})</script>
<script src="https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@*/dist/embed-amd.js" crossorigin="anonymous"></script>
<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml-full.js" type="text/javascript"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.1.10/require.min.js"></script>
<link rel="stylesheet" href="site_libs/bootstrap/bootstrap.min.css">
<style>@import url("https://fonts.googleapis.com/css2?family=Source+Sans+Pro&display=swap");</style>
</head><body><a href="/core.html#Module">Module</a> <a href="https://example.org/">out</a></body></html>"""


def test_offline_step_rewrites_what_quarto_writes(tmp_path, node_modules):
    "Quarto's CDN tags (as quarto-cli writes them for widgets and MathJax) point at the vendored copies afterwards"
    (tmp_path/'index.html').write_text(QUARTO_HEAD, encoding='utf-8')
    (tmp_path/'core.html').write_text('<html><body><h3 id="Module">Module</h3></body></html>', encoding='utf-8')
    (tmp_path/'site_libs'/'bootstrap').mkdir(parents=True)
    (tmp_path/'site_libs'/'bootstrap'/'bootstrap.min.css').write_text(
        '@import url(https://fonts.googleapis.com/css?family=Lato);body{color:red}', encoding='utf-8')
    docsite.make_offline(tmp_path, node_modules)
    text = (tmp_path/'index.html').read_text(encoding='utf-8')
    srcs = re.findall(r'<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)"', text)
    assert srcs and not [s for s in srcs if s.startswith(('http:', 'https:', '//'))], srcs
    assert all((tmp_path/s).is_file() for s in srcs), srcs
    assert 'integrity=' not in text
    assert text.index('dlcourse-widgets.js') < text.index('html-manager/dist/embed-amd.js')
    assert 'data-jupyter-widgets-cdn="site_libs/vendor/npm/"' in text
    assert 'fonts.googleapis.com/css2' not in text.split('dropped @import of')[0]
    assert '<a href="core.html#Module">' in text and 'https://example.org/' in text
    assert 'googleapis' not in (tmp_path/'site_libs'/'bootstrap'/'bootstrap.min.css').read_text().split('dropped')[0]


def test_offline_step_in_a_subfolder(tmp_path, node_modules):
    "A page in lib/ loads the vendored copies through ../, and nbdev's links from the site root become relative both ways"
    (tmp_path/'lib').mkdir()
    (tmp_path/'lib'/'gradcheck.html').write_text(
        QUARTO_HEAD.replace('</body>', '<a href="/lib/gradcheck.html#grad_check">self</a></body>'), encoding='utf-8')
    (tmp_path/'index.html').write_text('<html><body><a href="/lib/gradcheck.html#grad_check">grad_check</a></body></html>',
                                       encoding='utf-8')
    (tmp_path/'core.html').write_text('<html><body><h3 id="Module">Module</h3></body></html>', encoding='utf-8')
    assert docsite.make_offline(tmp_path, node_modules) == 3
    text = (tmp_path/'lib'/'gradcheck.html').read_text(encoding='utf-8')
    srcs = re.findall(r'<script\b[^>]*?src="([^"]+)"', text)
    assert srcs and all(s.startswith('../site_libs/vendor/') and (tmp_path/'lib'/s).resolve().is_file() for s in srcs), srcs
    assert 'data-jupyter-widgets-cdn="../site_libs/vendor/npm/"' in text
    assert '<a href="../core.html#Module">' in text and '<a href="../lib/gradcheck.html#grad_check">' in text
    assert '<a href="lib/gradcheck.html#grad_check">' in (tmp_path/'index.html').read_text(encoding='utf-8')


def test_library_notebooks_are_pages_in_their_folder(tmp_path):
    "nbs/lib/*.ipynb are pages lib/*.html, after the lessons in the order asked, under their heading; other folders are not"
    nbs = tmp_path/'nbs'
    for f in ('index.ipynb', '02_b.ipynb', '01_a.ipynb', 'glossary.md', 'lib/zeta.ipynb', 'lib/alpha.ipynb',
              'lib/beta.ipynb', 'lib/_private.ipynb', 'lib/notes.md', 'data/table.ipynb'):
        (nbs/f).parent.mkdir(parents=True, exist_ok=True)
        (nbs/f).write_text('{}', encoding='utf-8')
    pages = docsite.collect_pages(nbs, ['beta', 'zeta'])
    assert [p.name for p in pages] == ['index', '01_a', '02_b', 'lib/beta', 'lib/zeta', 'lib/alpha', 'glossary']
    assert [p.section for p in pages] == ['', '', '', 'Library', 'Library', 'Library', '']
    assert pages[3].rel == 'lib/beta.ipynb' and pages[3].root == '../' and pages[1].root == ''
    for p in pages: p.title = p.name
    contents = docsite.sidebar_contents(pages)
    assert [c.get('href') or c['section'] for c in contents] == ['index.ipynb', '01_a.ipynb', '02_b.ipynb', 'Library',
                                                                  'glossary.md']
    assert [c['href'] for c in contents[3]['contents']] == ['lib/beta.ipynb', 'lib/zeta.ipynb', 'lib/alpha.ipynb']


def test_links_between_the_folders():
    "Links to notebooks resolve from the page's own folder, into lib/ and back out of it, on both render paths"
    names = {'index', '02_backprop', 'lib/gradcheck'}
    assert docsite.fix_links('[b](../02_backprop.ipynb#x) [m](../99_missing.ipynb) [g](gradcheck.ipynb)', names, True,
                             'lib') == '[b](../02_backprop.ipynb#x) m [g](gradcheck.ipynb)'
    assert docsite.fix_links('[g](lib/gradcheck.ipynb) [b](02_backprop.ipynb)', names, True) == \
        '[g](lib/gradcheck.ipynb) [b](02_backprop.ipynb)'
    assert docsite.fix_links('[g](gradcheck.ipynb)', names, True) == 'g'
    href_map = {'index': 'index.html', '02_backprop': 'backprop.html', 'lib/gradcheck': 'lib/gradcheck.html'}
    md = docsite.pandoc_to_commonmark('[b](../02_backprop.ipynb#x) [g](gradcheck.ipynb) [i](../index.ipynb)', href_map, 'lib')
    assert md == '[b](../backprop.html#x) [g](gradcheck.html) [i](../index.html)'
    assert docsite.pandoc_to_commonmark('[g](lib/gradcheck.ipynb#grad_check)', href_map) == '[g](lib/gradcheck.html#grad_check)'


def test_api_docs_have_the_address_nbdev_links():
    "nbdev links a name's docs in lower case (Quarto's heading ids); the nbconvert path adds that id to the heading"
    page = ('<h2 id="Learner">Learner</h2><h3 id="Learner">Learner</h3><h3 id="grad_check">grad_check</h3>'
            '<h3 id="The-derivative-of-%CF%83">The derivative</h3><h3 id="GradCheck">GradCheck</h3><p id="gradcheck"></p>')
    out = docsite.api_anchors(page)
    assert out.count('id="learner"') == 1 and 'id="grad_check"' in out and out.count('id="grad_check"') == 1
    assert 'the-derivative' not in out and out.count('id="gradcheck"') == 1


def test_offline_step_refuses_what_it_cannot_vendor(tmp_path, node_modules):
    (tmp_path/'index.html').write_text('<html><head><script src="https://cdn.plot.ly/plotly-2.0.min.js"></script>'
                                       '</head><body><img src="https://example.org/x.png"></body></html>', encoding='utf-8')
    with pytest.raises(docsite.BuildError, match='plotly'):
        docsite.make_offline(tmp_path, node_modules)


# ------------------------------------------------------------------- what a student expects of a course website
CHAPTER_PAGES = [n for n in COURSE_PAGES if re.match(r'^\d', n)]
PHONE = {'width': 375, 'height': 740}
SHOT_PAGES = {'front': 'index.html', 'lesson': html_name('03_convolution'), 'model-zoo': html_name('08_model_zoo')}


def _site_pages(site):
    return sorted(p for p in site.rglob('*.html') if not {'site_libs', 'pagefind'} & set(p.relative_to(site).parts))


def test_every_internal_link_lands_on_an_element(course_site):
    "Every link with an anchor, nbdev's API links among them (`lib/learner.html#learner.fit`), reaches an id on its page"
    site, broken = course_site.resolve(), []
    for page, links in _site_links(site).items():
        for href, target, fragment in links:
            target = target or page
            if fragment and target.suffix == '.html' and target.exists() and \
                    fragment not in _ids(target) and unquote(fragment) not in _ids(target):
                broken.append(f'{page.relative_to(site).as_posix()}: {href}')
    assert not broken, 'links whose anchor names no element:\n' + '\n'.join(sorted(broken))


def test_api_links_land_on_the_api_docs(course_site):
    "nbdev's lower-case address of a class is on its API docs (show_doc's heading), not on a section of the same name"
    text = (course_site/html_name('00_core')).read_text(encoding='utf-8')
    m = re.search(r'<h3[^>]*>\s*<span id="module">', text)
    assert m, 'core.html#module is not on the API docs of Module'
    learner = (course_site/'lib'/'learner.html').read_text(encoding='utf-8')
    assert 'id="learner.fit"' in learner


def test_ids_are_unique(course_site):
    dups = {}
    for page in _site_pages(course_site):
        ids = re.findall(r'\bid="([^"]*)"', page.read_text(encoding='utf-8'))
        if (d := sorted({i for i in ids if ids.count(i) > 1})): dups[page.name] = d
    assert not dups, dups


def test_api_signatures_read_as_python(course_site):
    "A class's API docs say `class Module()`, not `def Module():`; no `rng:NoneType=None` clutter on any page"
    clutter = [p.name for p in _site_pages(course_site)
               if re.search(r'\w:\s*NoneType\b', re.sub(r'<[^>]+>', '', p.read_text(encoding='utf-8')))]
    assert not clutter, f'NoneType in the API docs of {clutter}'
    core = re.sub(r'<[^>]+>', '', (course_site/html_name('00_core')).read_text(encoding='utf-8'))
    assert 'class Module()' in core and 'def Module(' not in core
    neuron = re.sub(r'<[^>]+>', '', (course_site/html_name('01_sigmoid_neuron')).read_text(encoding='utf-8'))
    assert 'class SigmoidNeuron(' in neuron and 'def SigmoidNeuron(' not in neuron


def test_checks_are_folded_below_the_prose(course_site):
    "Cells that only test (`test_eq`, `assert`) are folded away under 'Checks'; code that teaches stays open"
    text = (course_site/html_name('03_convolution')).read_text(encoding='utf-8')
    folds = re.findall(r'<details class="dl-fold"><summary>([^<]*)</summary>(.*?)</details>', text, re.S)
    assert len(folds) >= 5 and {s for s, _ in folds} == {'Checks'}
    assert all(re.search(r'test_\w+|assert', body) for _, body in folds)
    assert 'conv_output_size' in re.sub(r'<details class="dl-fold">.*?</details>', '', text, flags=re.S)


def test_long_outputs_are_folded(course_site):
    "The training log of the train command (200 epochs) is folded into one line that says how long it is"
    text = (course_site/html_name('07_sgd')).read_text(encoding='utf-8')
    folds = re.findall(r'<details class="dl-long-output"><summary>Output: (\d+) lines', text)
    assert folds and max(map(int, folds)) > 200, folds


def test_every_page_has_the_furniture(course_site):
    "Favicon, skip link, top navigation, search box on every page; a table of contents on the long ones; each chapter's notebook links"
    for page in _site_pages(course_site):
        text, name = page.read_text(encoding='utf-8'), page.relative_to(course_site).as_posix()
        assert re.search(r'<link rel="icon" href="[^"]*favicon\.svg"', text), name
        assert 'class="dl-skip" href="#dl-main"' in text and 'id="dl-main"' in text, name
        assert 'id="dl-search"' in text and 'pagefind-ui.js' in text, name
        assert re.search(r'<nav\b[^>]*class="dl-topnav"', text), name
    for n in CHAPTER_PAGES:
        text = (course_site/html_name(n)).read_text(encoding='utf-8')
        assert f'href="notebooks/{n}.ipynb" download' in text and f'/lab/tree/{n}.ipynb"' in text, n
        assert (course_site/'notebooks'/f'{n}.ipynb').read_bytes() == (NBS/f'{n}.ipynb').read_bytes()
    assert 'id="TOC"' in (course_site/html_name('03_convolution')).read_text(encoding='utf-8')
    assert (course_site/'pagefind'/'pagefind-ui.js').is_file()


def test_front_page_is_for_students(course_site):
    "What the course is, one picture, the course map linked to every chapter; the developer material on its own page"
    text = (course_site/'index.html').read_text(encoding='utf-8')
    links = set(re.findall(r'<a\b[^>]*?href="([^"#]+\.html)"', text.split('<main', 1)[1]))
    assert {html_name(n) for n in CHAPTER_PAGES} <= links, sorted({html_name(n) for n in CHAPTER_PAGES} - links)
    imgs = re.findall(r'<img\b[^>]*>', text.split('<main', 1)[1])
    assert len(imgs) == 1 and 'lenet5.svg' in imgs[0] and re.search(r'alt="LeNet-5 [^"]{20,}"', imgs[0]), imgs
    assert (course_site/'images'/'lenet5.svg').is_file()
    for dev in ('Working on the course', 'Benchmarks', 'tools/js/build'): assert dev not in text, dev
    contributing = (course_site/'contributing.html').read_text(encoding='utf-8')
    for dev in ('Working on the course', 'Benchmarks', 'tools/js/build', 'tools/docs/build'): assert dev in contributing, dev


def test_front_picture_is_what_model_svg_draws_now():
    from dlcourse.diagram import model_svg
    from dlcourse.zoo import lenet5
    drawn = model_svg(lenet5(rng=0), (1, 1, 28, 28), title='LeNet-5 for a 28×28 Fashion-MNIST image: its layers and the '
                                                          'shape after each').svg
    assert (NBS/'images'/'lenet5.svg').read_text(encoding='utf-8') == drawn + '\n', \
        'nbs/images/lenet5.svg is out of date: save model_svg(lenet5(rng=0), (1, 1, 28, 28), title=...) there again'


def test_readme_keeps_the_quick_start_and_a_docs_command_for_a_fresh_clone():
    import tomllib
    readme = (ROOT/'README.md').read_text(encoding='utf-8')
    quick = readme.split('## Quick start', 1)[1].split('\n## ', 1)[0]
    assert re.search(r'```sh\ntools/quickstart\b.*\ntools/test\b', quick), quick
    assert re.search(r'```sh\ntools/docs/build\b', readme)
    assert 'pip_install -e ".[docs]"' in (ROOT/'tools'/'docs'/'build').read_text(encoding='utf-8')
    docs = tomllib.loads((ROOT/'pyproject.toml').read_text(encoding='utf-8'))['project']['optional-dependencies']['docs']
    names = {re.match(r'[\w-]+', d).group(0).lower() for d in docs}
    assert {'nbdev', 'nbconvert', 'pyyaml', 'execnb'} <= names, names


def test_lessons_show_the_architecture_diagrams(course_site):
    "The diagrams drawn from the models, with what they show as their alt text"
    def alts(n): return re.findall(r'<img\b[^>]*?alt="([^"]*)"', (course_site/html_name(n)).read_text(encoding='utf-8'))
    zoo = ' | '.join(alts('08_model_zoo'))
    for what in ('LeNet-5', 'AlexNet', 'Inception module', 'residual block'): assert what in zoo, what
    assert any('gradients backward' in a for a in alts('02_backprop'))
    assert any(a.startswith('Zero padding') for a in alts('03_convolution'))


# ------------------------------------------------------------------------------------------------ in the browser
def _open(open_page, base, name, viewport=None):
    page = open_page()
    if viewport: page.set_viewport_size(viewport)
    page.goto(base + name, wait_until='load')
    page.evaluate(WAIT_JS)
    return page


@pytest.mark.parametrize('term,where', [('Faltungsschicht', html_name('03_convolution')),
                                        ('Passt nicht', html_name('03_convolution'))])
def test_search_finds_the_lecture_terms(open_page, course_site, serve, term, where):
    "The search box finds the lecture's terms offline, from the static index, and links the pages that hold them"
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    page = _open(open_page, serve(course_site), 'lib/learner.html')     # from a page in lib/ too
    box = page.locator('#dl-search input')
    box.fill(term)
    page.wait_for_selector('#dl-search .pagefind-ui__result-link', timeout=15000)
    try:                                      # the UI loads and shows its results one by one: wait for the page's link
        page.wait_for_function("w => [...document.querySelectorAll('#dl-search .pagefind-ui__result-link')]"
                               ".some(a => a.href.includes(w))", arg=where, timeout=15000)
    except PlaywrightTimeout: pass                                     # the assertion below says what was found
    def page_of(url):
        path = urlsplit(url).path.lstrip('/')
        return path + 'index.html' if path == '' or path.endswith('/') else path
    hrefs = [page_of(h) for h in page.locator('#dl-search .pagefind-ui__result-link').evaluate_all('l => l.map(a => a.href)')]
    assert where in hrefs, (term, hrefs)
    page.locator(f'#dl-search .pagefind-ui__result-link[href*="{where}"]').first.click()
    page.wait_for_load_state('load')
    assert page_of(page.url) == where and term.split()[0] in page.inner_text('main')
    assert not page.blocked, page.blocked
    page.close()


def test_no_page_scrolls_sideways_on_a_phone(open_page, course_site, serve):
    """At 375 px every page fits the screen's width (equations, tables, code and widgets scroll in their own box); the
    chapter list is behind the menu button, and the skip link is the first thing to tab to"""
    base, wide = serve(course_site), {}
    for p in _site_pages(course_site):
        name = p.relative_to(course_site).as_posix()
        page = _open(open_page, base, name, PHONE)
        width = page.evaluate('() => document.documentElement.scrollWidth')
        if width > PHONE['width']:
            wide[name] = (width, page.evaluate("""() => [...document.querySelectorAll('main *')]
              .filter(e => e.getBoundingClientRect().right > innerWidth + 1).slice(0, 3).map(e => e.outerHTML.slice(0, 120))"""))
        if name == 'index.html':
            assert not page.locator('#dl-sidebar').is_visible(), 'the chapter list is folded away on a phone'
            page.keyboard.press('Tab')
            assert page.evaluate('() => document.activeElement.className') == 'dl-skip'
            page.evaluate('() => document.activeElement.blur()')     # the focused skip link covers the top bar
            button = page.locator('.dl-menu-button')
            button.click()
            assert page.locator('#dl-sidebar').is_visible() and button.get_attribute('aria-expanded') == 'true'
            button.click()
            assert not page.locator('#dl-sidebar').is_visible()
        if name in SHOT_PAGES.values():
            key = next(k for k, v in SHOT_PAGES.items() if v == name)
            page.screenshot(path=str(SCREENSHOTS/'pages'/f'{key}-phone.png'), full_page=False)
        page.close()
    assert not wide, f'pages wider than {PHONE["width"]} px: {wide}'


FIGURES_JS = """() => [...document.querySelectorAll('main img, main svg[role="img"], main canvas')]
  .filter(e => !e.closest('.dlw-root'))        // the widgets' own drawings: tests/test_widgets_site.py
  .map(e => ({tag: e.tagName.toLowerCase(), alt: e.tagName === 'IMG' ? e.getAttribute('alt') : e.getAttribute('aria-label')}))"""


def test_every_figure_has_meaningful_alt_text(open_page, course_site, serve):
    "Every figure says what it shows: its caption (a plot) or its title (a diagram), never nbconvert's placeholder"
    base, bad, n = serve(course_site), [], 0
    for p in _site_pages(course_site):
        name = p.relative_to(course_site).as_posix()
        page = _open(open_page, base, name)
        for f in page.evaluate(FIGURES_JS):
            n += 1
            alt = (f['alt'] or '').strip()
            if len(alt.split()) < 4 or 'No description' in alt: bad.append(f'{name}: <{f["tag"]}> alt={alt!r}')
        if name in SHOT_PAGES.values():
            key = next(k for k, v in SHOT_PAGES.items() if v == name)
            page.screenshot(path=str(SCREENSHOTS/'pages'/f'{key}-desktop.png'), full_page=False)
        page.close()
    assert n > 30, f'only {n} figures on the site'
    assert not bad, 'figures without a meaningful alt text:\n' + '\n'.join(bad)


def _contrast(fg, bg):
    def lum(rgb):
        c = [v / 255 for v in rgb]
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
    a, b = sorted((lum(fg), lum(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def test_active_sidebar_entry_is_readable(open_page, course_site, serve):
    page = _open(open_page, serve(course_site), html_name('03_convolution'))
    colors = page.evaluate("""() => [...document.querySelectorAll('.dl-nav-link.active, .dl-nav-link.active *')].map(e => {
      let b = e, bg; do { bg = getComputedStyle(b).backgroundColor; b = b.parentElement; } while (bg === 'rgba(0, 0, 0, 0)' && b);
      return [getComputedStyle(e).color, bg, getComputedStyle(e).opacity]; })""")
    page.close()
    assert colors
    for fg, bg, opacity in colors:
        rgb = lambda s: [int(v) for v in re.findall(r'\d+', s)[:3]]
        assert float(opacity) == 1 and _contrast(rgb(fg), rgb(bg)) >= 4.5, (fg, bg, opacity)


AXE_PAGES = ['index.html', html_name('03_convolution'), html_name('05_pooling'), html_name('07_sgd'),
             html_name('08_model_zoo'), html_name('10_widgets'), 'lib/learner.html', 'glossary.html', 'contributing.html']


def test_axe_finds_no_serious_violation(open_page, course_site, serve, node_modules):
    "axe-core (pinned in tools/docs/package-lock.json) on the front page, lessons with widgets, a library page, glossary"
    axe = node_modules/'axe-core'/'axe.min.js'
    base, found = serve(course_site), {}
    for name in AXE_PAGES:
        page = _open(open_page, base, name)
        page.add_script_tag(path=str(axe))
        violations = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
          .filter(v => ['serious', 'critical'].includes(v.impact))
          .map(v => `${v.id} (${v.impact}): ${v.nodes.length}× e.g. ${v.nodes[0].target.join(' ')}: ${v.nodes[0].failureSummary.split('\\n')[1] || ''}`)""")
        if violations: found[name] = violations
        page.close()
    assert not found, '\n'.join(f'{k}:\n  ' + '\n  '.join(v) for k, v in found.items())


# ------------------------------------------------------------------------- the same site from both render paths
def test_quarto_navbar_is_the_top_bar():
    "nbs/_quarto.yml's navbar (the Quarto path) lists what the nbconvert path's top bar lists, in the same order"
    quarto = yaml.safe_load((NBS/'_quarto.yml').read_text(encoding='utf-8'))['website']['navbar']
    pages = docsite.collect_pages(NBS)
    for p in pages: p.output = html_name(p.name)
    ours = [(t['text'], t['name']) for t in docsite.top_navigation(pages)]
    assert [(i['text'], i['href'].rsplit('.', 1)[0]) for i in quarto['left']] == ours
    assert quarto['search'] is False, 'the search is Pagefind on both paths (tools/docs/finish.py)'


QUARTO_PAGE = """<!DOCTYPE html><html lang="en"><head><title>{title}</title></head><body class="nav-sidebar floating">
<div id="quarto-content"><main class="content" id="quarto-document-content">
<header id="title-block-header" class="quarto-title-block default"><h1 class="title">{title}</h1></header>
{body}</main></div></body></html>"""


def test_finishing_step_on_what_quarto_writes(tmp_path):
    "The finishing step gives a page as Quarto writes it what it gives the nbconvert path's pages"
    (tmp_path/'lib').mkdir()
    log = '\n'.join(f'epoch {i}  loss 0.{i:03d}' for i in range(1, 41))
    (tmp_path/'widgets.html').write_text(QUARTO_PAGE.format(title='Widgets', body=(
        '<p><a href="/lib/learner.html#learner.fit"><code>Learner.fit</code></a> <a href="/lib/learner.html#_private">p</a></p>'
        f'<div class="cell-output cell-output-stdout"><pre><code>{log}</code></pre></div>')), encoding='utf-8')
    (tmp_path/'lib'/'learner.html').write_text(QUARTO_PAGE.format(title='Learner', body=(
        '<section id="learner" class="level3"><h3 class="anchored" data-anchor-id="learner">Learner</h3></section>')),
        encoding='utf-8')
    nbs = tmp_path/'nbs'
    (nbs/'lib').mkdir(parents=True)
    for n in ('10_widgets', 'lib/learner'): (nbs/f'{n}.ipynb').write_text('{}', encoding='utf-8')
    pages = [docsite.Page(src=nbs/'10_widgets.ipynb', name='10_widgets', output='widgets.html'),
             docsite.Page(src=nbs/'lib'/'learner.ipynb', name='lib/learner', output='lib/learner.html')]
    dropped = docsite.finish.finish(tmp_path, pages, nbs)
    assert dropped == ['widgets.html: /lib/learner.html#_private']
    learner = (tmp_path/'lib'/'learner.html').read_text(encoding='utf-8')
    assert '<section id="learner" class="level3"><span id="learner.fit"></span>' in learner
    assert 'href="#quarto-document-content">Skip to content' in learner and '<main data-pagefind-body' in learner
    assert 'href="../site_libs/dlcourse/favicon.svg"' in learner and 'href="../notebooks/lib/learner.ipynb" download' in learner
    assert '<script src="../pagefind/pagefind-ui.js"></script>' in learner and 'id="dl-search"' in learner
    widgets = (tmp_path/'widgets.html').read_text(encoding='utf-8')
    assert '<details class="dl-long-output"><summary>Output: 40 lines' in widgets
    assert 'href="/lib/learner.html"' in widgets and '</header><p class="dl-notebook-links">' in widgets
    assert (tmp_path/'notebooks'/'10_widgets.ipynb').is_file() and (tmp_path/'site_libs'/'dlcourse'/'site.js').is_file()


def test_checks_and_figures_are_marked_for_both_paths():
    "The processing step marks test cells and figures with Quarto's own cell options, which the nbconvert template reads"
    assert docsite.is_check_cell("x = conv_output_size(7, 3, 1)\ntest_eq(x, 5)\nassert x > 0")
    assert docsite.is_check_cell("for s in (1, 2):\n    test_fail(lambda: f(s), contains='stride')")
    assert not docsite.is_check_cell("test_eq(f(1), 2)\nplt.plot(x)")            # a plot teaches: it stays open
    assert not docsite.is_check_cell("x = 1")
    assert not docsite.is_check_cell("test_eq(1, 1)", [{'output_type': 'display_data', 'data': {}}])
    prose = 'The sigmoid has a derivative. The derivative of $\\sigma$ and [its graph](x.ipynb), for $x$ from -6 to 6:'
    assert docsite.figure_alt('plt.plot(x, y)', prose) == 'The derivative of $\\sigma$ and its graph, for $x$ from -6 to 6'
    assert docsite.figure_alt('#| fig-cap: "Loss per epoch"\nplt.plot(x)', prose) == 'Loss per epoch'
    nb = __import__('nbformat').v4.new_notebook(cells=[__import__('nbformat').v4.new_code_cell(
        '#| code-fold: true\n#| code-summary: "Checks"\n#| fig-alt: "A plot of σ"\ntest_eq(1, 1)')])
    docsite.apply_quarto_directives(nb)
    c = nb.cells[0]
    assert c.source == 'test_eq(1, 1)' and 'dl-fold' in c.metadata.tags
    assert c.metadata.dl_summary == 'Checks' and c.metadata.dl_alt == 'A plot of σ'
