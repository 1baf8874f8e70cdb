"""Render README.md from nbs/index.ipynb (the website's front page) and nbs/contributing.md (its contributor page),
without Quarto (nbdev-readme needs it).

Markdown cells are copied; code cells are shown with their text output unless a directive hides them
(`#| hide`, `#| default_exp`, `#| export...`, `#| echo: false` hides only the code). The contributor page follows as the
section "Contributor guide", its headings one level down. Links and images relative to nbs/ (`03_convolution.ipynb`,
`images/lenet5.svg`) are written relative to the repository root. Usage: python tools/readme.py [--check]
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK, README, CONTRIBUTING = ROOT/'nbs'/'index.ipynb', ROOT/'README.md', ROOT/'nbs'/'contributing.md'
HEADER = ('<!-- Generated from nbs/index.ipynb and nbs/contributing.md by tools/readme.py: edit those, not this file. '
          '-->\n\n')
_LINK_RE = re.compile(r'(!?\[[^\]\n]*\]\()([^)\s]+)\)')
_HIDDEN = {'hide', 'default_exp', 'export', 'exporti', 'exports'}


def _split_directives(source):
    lines = source.splitlines()
    n = 0
    while n < len(lines) and lines[n].startswith('#|'): n += 1
    directives = {}
    for line in lines[:n]:
        words = line[2:].strip().split(maxsplit=1)
        if words: directives[words[0].rstrip(':')] = words[1] if len(words) > 1 else ''
    return directives, '\n'.join(lines[n:]).strip('\n')


def _text_outputs(cell):
    for out in cell.get('outputs', []):
        text = out.get('text') or out.get('data', {}).get('text/plain')
        if text: yield ''.join(text).rstrip('\n')


def from_root(md, folder='nbs'):
    "Links and images of a page in `folder` relative to the repository root (`[x](02_backprop.ipynb)` -> nbs/...)"
    def sub(m):
        url = m.group(2)
        if re.match(r'^(?:[a-z][\w+.-]*:|/|#)', url): return m.group(0)
        return f'{m.group(1)}{folder}/{url})'
    return _LINK_RE.sub(sub, md)


def contributor_guide(path=CONTRIBUTING):
    "The contributor page without its front matter, as a section of the README (headings one level down)"
    text = Path(path).read_text(encoding='utf-8')
    if text.startswith('---'): text = text.split('\n---', 1)[1].split('\n', 1)[1]
    body = re.sub(r'^(#+) ', lambda m: '#' + m.group(1) + ' ', text.strip('\n'), flags=re.M)
    return '## Contributor guide\n\n' + from_root(body)


def render(nb_path=NOTEBOOK, contributing=CONTRIBUTING):
    "README.md text for the notebook at `nb_path` and the contributor page `contributing`"
    parts = []
    for cell in json.loads(Path(nb_path).read_text(encoding='utf-8'))['cells']:
        source = ''.join(cell['source'])
        if cell['cell_type'] == 'markdown':
            parts.append(from_root(source.strip('\n')))
            continue
        if cell['cell_type'] != 'code': continue
        directives, code = _split_directives(source)
        if _HIDDEN & set(directives) or not code: continue
        if directives.get('echo') != 'false': parts.append(f"```python\n{code}\n```")
        parts.extend(f"```\n{text}\n```" for text in _text_outputs(cell))
    if Path(contributing).exists(): parts.append(contributor_guide(contributing))
    return HEADER + '\n\n'.join(parts) + '\n'


if __name__ == '__main__':
    text = render()
    if '--check' in sys.argv[1:]:
        if not README.exists() or README.read_text(encoding='utf-8') != text:
            sys.exit("README.md is out of date with nbs/index.ipynb: run `python tools/readme.py`")
        print("README.md matches nbs/index.ipynb")
    else:
        README.write_text(text, encoding='utf-8')
        print(f"wrote {README.relative_to(ROOT)}")
