"""Keep every notebook's Colab badge and Colab install line pointing at the repository in `_config.yml`.

`python tools/colab.py` rewrites them in place (both twins); `check()` is what the tests call.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"
BADGE_RE = re.compile(r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]\([^)]*\)")
INSTALL_RE = re.compile(r'"nanoseek\[hf\] @ git\+[^"]*"')


def repository() -> tuple[str, str]:
    """(https URL, branch) of the repository, read from _config.yml without a YAML dependency."""
    text = (ROOT / "_config.yml").read_text(encoding="utf-8")
    block = text.split("\nrepository:", 1)[1]
    url = re.search(r"^\s+url:\s*(\S+)", block, re.M).group(1)
    branch = re.search(r"^\s+branch:\s*(\S+)", block, re.M).group(1)
    return url.rstrip("/"), branch


def expected(notebook: Path) -> tuple[str, str]:
    url, branch = repository()
    github = url.split("github.com/", 1)[1]
    badge = BADGE.format(url=f"https://colab.research.google.com/github/{github}/blob/{branch}/notebooks/{notebook.stem}.ipynb")
    install = f'"nanoseek[hf] @ git+{url}@{branch}"'
    return badge, install


def fix(path: Path) -> bool:
    badge, install = expected(path)
    text = path.read_text(encoding="utf-8")
    quoted_install = install.replace('"', '\\"') if path.suffix == ".ipynb" else install
    new = BADGE_RE.sub(lambda m: badge, text)
    if path.suffix == ".ipynb":
        new = re.sub(r'\\"nanoseek\[hf\] @ git\+[^"\\]*\\"', lambda m: quoted_install, new)
    else:
        new = INSTALL_RE.sub(lambda m: install, new)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def problems() -> list[str]:
    out = []
    for py in sorted(ROOT.glob("notebooks/[0-9][0-9]_*.py")):
        badge, install = expected(py)
        text = py.read_text(encoding="utf-8")
        if badge not in text:
            out.append(f"{py.name}: Colab badge missing or not pointing at {badge}")
        if install not in text:
            out.append(f"{py.name}: Colab install line missing or not {install}")
    return out


if __name__ == "__main__":
    for path in sorted(ROOT.glob("notebooks/[0-9][0-9]_*.*")):
        if path.suffix in (".py", ".ipynb") and fix(path):
            print(f"updated {path.name}")
    sys.exit(1 if problems() else 0)
