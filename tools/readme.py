"""Render README.md from nbs/index.ipynb, without Quarto (nbdev-readme needs it).

Markdown cells are copied; code cells are shown with their text output unless a directive hides them
(`#| hide`, `#| default_exp`, `#| export...`, `#| echo: false` hides only the code). Usage: python tools/readme.py [--check]
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK, README = ROOT/'nbs'/'index.ipynb', ROOT/'README.md'
HEADER = '<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file. -->\n\n'
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


def render(nb_path=NOTEBOOK):
    "README.md text for the notebook at `nb_path`"
    parts = []
    for cell in json.loads(Path(nb_path).read_text(encoding='utf-8'))['cells']:
        source = ''.join(cell['source'])
        if cell['cell_type'] == 'markdown':
            parts.append(source.strip('\n'))
            continue
        if cell['cell_type'] != 'code': continue
        directives, code = _split_directives(source)
        if _HIDDEN & set(directives) or not code: continue
        if directives.get('echo') != 'false': parts.append(f"```python\n{code}\n```")
        parts.extend(f"```\n{text}\n```" for text in _text_outputs(cell))
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
