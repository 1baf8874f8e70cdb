"""The finishing step of the dlcourse site, the same on both render paths (tools/docs/docsite.py runs it on the HTML
that Quarto or nbconvert wrote, before the offline step):

- every link into the site lands on an element: nbdev's doc links address names in lower case (`#learner.fit`), and a
  method the page does not document on its own lands on its class's docs; a link whose anchor names nothing on the
  page keeps only the page;
- long cell outputs (a training log) are folded into a <details> that says how long they are; code and output boxes,
  which scroll sideways on a narrow screen, take the keyboard's focus;
- a skip link, the favicon, the search box (Pagefind's static index, built after the offline step by `search_index`),
  and each chapter's "Open in JupyterLab" and "Download notebook" links after its title (the notebook is copied into
  `notebooks/`).
"""
import html
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
OWN = 'site_libs/dlcourse'          # the site's own files, from the site root
LONG_OUTPUT_LINES = 25              # an output longer than this is folded
JUPYTERLAB_URL = 'http://localhost:8888/lab/tree/'   # JupyterLab started in nbs/ of a clone (`jupyter lab nbs/`)

FAVICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#1a5fb4"/>
<g fill="#fff"><rect x="5" y="5" width="6" height="6" rx="1"/><rect x="13" y="5" width="6" height="6" rx="1" opacity=".75"/>
<rect x="21" y="5" width="6" height="6" rx="1" opacity=".5"/><rect x="5" y="13" width="6" height="6" rx="1" opacity=".75"/>
<rect x="13" y="13" width="6" height="6" rx="1"/><rect x="21" y="13" width="6" height="6" rx="1" opacity=".75"/>
<rect x="5" y="21" width="6" height="6" rx="1" opacity=".5"/><rect x="13" y="21" width="6" height="6" rx="1" opacity=".75"/>
<rect x="21" y="21" width="6" height="6" rx="1"/></g></svg>
"""

SITE_JS = """// Written by tools/docs/finish.py: the chapter menu on small screens, and the search box (Pagefind, offline).
(function () {
  var button = document.querySelector('.dl-menu-button');
  var sidebar = document.getElementById('dl-sidebar') || document.getElementById('quarto-sidebar');
  if (button && sidebar) {
    button.addEventListener('click', function () {
      var open = document.body.classList.toggle('dl-nav-open');
      button.setAttribute('aria-expanded', String(open));
      if (open) { var first = sidebar.querySelector('a'); if (first) first.focus(); }
    });
    document.addEventListener('keydown', function (e) {
      if (e.key === 'Escape' && document.body.classList.contains('dl-nav-open')) {
        document.body.classList.remove('dl-nav-open');
        button.setAttribute('aria-expanded', 'false');
        button.focus();
      }
    });
  }
  var box = document.getElementById('dl-search');
  var root = document.currentScript.src.replace(/site_libs\\/dlcourse\\/site\\.js.*$/, '');
  if (box && window.PagefindUI) {
    new window.PagefindUI({
      element: '#dl-search', showSubResults: true, showImages: false, resetStyles: false,
      bundlePath: root + 'pagefind/', baseUrl: new URL(root).pathname,
      translations: { placeholder: 'Search the course' }
    });
    // Pagefind's box has a placeholder but no name: give it one as soon as it is drawn
    var name = function () {
      var input = box.querySelector('input');
      if (input && !input.hasAttribute('aria-label')) input.setAttribute('aria-label', 'Search the course');
    };
    new MutationObserver(name).observe(box, { childList: true, subtree: true });
    name();
  }
})();
"""


# ------------------------------------------------------------------------------------------------------------ anchors
def _ids(text): return set(re.findall(r'\bid="([^"]*)"', text))


def _add_alias(text, target_id, alias):
    "A <span id=alias> as the first child of the element with id `target_id`"
    m = re.search(r'<[a-zA-Z][^>]*\bid="' + re.escape(target_id) + r'"[^>]*>', text)
    if not m: return text
    return text[:m.end()] + f'<span id="{alias}"></span>' + text[m.end():]


def resolve_anchors(site, pages_html):
    """Make every `page.html#anchor` link of the site land on an element (see the module's docstring); `pages_html`:
    {path: text}, changed in place. Returns the links whose anchor was dropped, as 'page: href'"""
    ids = {p: _ids(t) for p, t in pages_html.items()}
    lower = {p: {i.lower(): i for i in sorted(s)} for p, s in ids.items()}     # an id in lower case wins
    aliases, dropped = {}, []
    link_re = re.compile(r'(<a\b[^>]*?\bhref=")([^"#]*)#([^"]+)(")')
    for page, text in list(pages_html.items()):
        def sub(m):
            path, raw = m.group(2), html.unescape(m.group(3))
            frag = unquote(raw)
            if urlsplit(path).scheme or urlsplit(path).netloc: return m.group(0)
            # nbdev writes its doc links from the site root (/lib/learner.html#learner.fit); the offline step makes
            # them relative later
            base = site if path.startswith('/') else page.parent
            target = (base/unquote(path.lstrip('/'))).resolve() if path else page
            if target not in ids: return m.group(0)
            if raw in ids[target] or frag in ids[target] or frag in aliases.get(target, {}): return m.group(0)
            owner = frag
            while owner:                       # learner.fit -> Learner's docs; conv2d.check_input -> conv2d's
                hit = lower[target].get(owner.lower())
                if hit:
                    aliases.setdefault(target, {})[frag] = hit
                    return m.group(0)
                owner = owner.rpartition('.')[0]
            dropped.append(f'{page.relative_to(site).as_posix()}: {path}#{frag}')
            return f'{m.group(1)}{path or page.name}{m.group(4)}'
        pages_html[page] = link_re.sub(sub, text)
    for target, al in aliases.items():
        for alias, hit in al.items(): pages_html[target] = _add_alias(pages_html[target], hit, html.escape(alias))
    return dropped


# ------------------------------------------------------------------------------------------------------ long outputs
_OUTPUT_PRE_RE = re.compile(r'(<div class="(?:jp-RenderedText[^"]*|cell-output cell-output-stdout)"[^>]*>\s*)(<pre\b.*?</pre>)',
                            re.S)


def fold_long_outputs(text, limit=LONG_OUTPUT_LINES):
    "Every cell output longer than `limit` lines folded into a <details>, its summary the number of lines and the last one"
    def sub(m):
        pre = m.group(2)
        lines = re.sub(r'<[^>]+>', '', pre).strip('\n').split('\n')
        if len(lines) <= limit: return m.group(0)
        last = html.unescape(lines[-1]).strip()
        summary = f'Output: {len(lines)} lines'
        if len(re.findall(r'\w', last)) >= 3:              # a last line that says something (not a closing bracket)
            summary += f' <span class="dl-fold-last">(last: <code>{html.escape(last[:90])}</code>)</span>'
        return f'{m.group(1)}<details class="dl-long-output"><summary>{summary}</summary>{pre}</details>'
    return _OUTPUT_PRE_RE.sub(sub, text)


# --------------------------------------------------------------------------------------------------- page furniture
def _head_insert(text, tags):
    return re.sub(r'</head>', tags + '\n</head>', text, count=1, flags=re.I)


def notebook_links(name, to_root):
    "The chapter's links to its notebook: open it in a local JupyterLab, or download it"
    nb = f'{name}.ipynb'
    return (f'<p class="dl-notebook-links"><a class="dl-open-lab" href="{JUPYTERLAB_URL}{nb}" '
            f'title="Opens the notebook in the JupyterLab that `jupyter lab nbs/` started in your clone">'
            f'Open in JupyterLab</a> <a class="dl-download" href="{to_root}notebooks/{nb}" download>'
            f'Download notebook</a></p>')


def furnish(text, to_root, notebook=None):
    "Favicon, the site's own script and the search box's files, a skip link, and a chapter's notebook links"
    if 'rel="icon"' not in text:
        text = _head_insert(text, f'<link rel="icon" href="{to_root}{OWN}/favicon.svg" type="image/svg+xml">')
    text = _head_insert(text, f'<link rel="stylesheet" href="{to_root}pagefind/pagefind-ui.css">\n'
                              f'<script src="{to_root}pagefind/pagefind-ui.js"></script>')
    if f'{OWN}/site.js' not in text:
        text = re.sub(r'</body>', f'<script src="{to_root}{OWN}/site.js"></script>\n</body>', text, count=1, flags=re.I)
    main = re.search(r'<main\b[^>]*>', text)
    if main:
        main_id = re.search(r'\bid="([^"]+)"', main.group(0))
        if not main_id:
            text = text[:main.start()] + main.group(0)[:-1] + ' id="dl-main">' + text[main.end():]
        main_id = main_id.group(1) if main_id else 'dl-main'
        text = re.sub(r'<main\b', '<main data-pagefind-body', text, count=1)
        if 'class="dl-skip"' not in text:
            text = re.sub(r'(<body\b[^>]*>)', rf'\1<a class="dl-skip" href="#{main_id}">Skip to content</a>', text, count=1)
        if 'id="dl-search"' not in text:
            text = re.sub(r'(<main\b[^>]*>)', r'\1<div id="dl-search" class="dl-search" role="search"></div>', text, count=1)
    if notebook:
        m = re.search(r'<header\b[^>]*\bid="title-block-header"[^>]*>.*?</header>', text, re.S)
        if m: text = text[:m.end()] + notebook_links(notebook, to_root) + text[m.end():]
    return text


def focusable_code(text):
    "Code and output boxes scroll sideways on a narrow screen: each <pre> of the page's content can take the focus"
    head, sep, body = text.partition('<main')
    return head + sep + re.sub(r'<pre(?![^>]*tabindex)(?=[\s>])', '<pre tabindex="0"', body)


def finish(site, pages, nbs):
    """The finishing step (see the module's docstring) on the rendered site `site`; `pages`: docsite's pages (`name`,
    `output`, `src`). Returns the links whose anchor named nothing (they now lead to the page)"""
    site = Path(site).resolve()
    own = site/OWN
    own.mkdir(parents=True, exist_ok=True)
    (own/'favicon.svg').write_text(FAVICON, encoding='utf-8')
    (own/'site.js').write_text(SITE_JS, encoding='utf-8')
    nb_of = {}
    for p in pages:
        if Path(p.src).suffix == '.ipynb' and p.name != 'index':     # the front page is no chapter
            dest = site/'notebooks'/f'{p.name}.ipynb'
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p.src, dest)
            nb_of[(site/p.output).resolve()] = p.name
    texts = {f.resolve(): f.read_text(encoding='utf-8') for f in site.rglob('*.html')
             if not {'site_libs', 'pagefind', 'notebooks'} & set(f.relative_to(site).parts)}
    dropped = resolve_anchors(site, texts)
    for f, text in texts.items():
        to_root = '../' * (len(f.relative_to(site).parts) - 1)
        f.write_text(furnish(focusable_code(fold_long_outputs(text)), to_root, nb_of.get(f)), encoding='utf-8')
    return dropped


# -------------------------------------------------------------------------------------------------------- search
def search_index(site, node_modules):
    """Pagefind's static search index of the site's pages, into `site`/pagefind (no server: the browser fetches the index
    files from the site). Pagefind is pinned in tools/docs/package-lock.json"""
    exe = Path(node_modules)/'.bin'/'pagefind'
    if not exe.exists(): raise FileNotFoundError(f'{exe}: run `npm ci --prefix tools/docs`')
    res = subprocess.run([str(exe), '--site', str(site), '--output-subdir', 'pagefind'], capture_output=True, text=True)
    if res.returncode: raise RuntimeError(f'pagefind failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}')
    return site/'pagefind'
