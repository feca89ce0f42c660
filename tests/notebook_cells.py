"""Read notebooks' cells by tag, for the tests that check exercises and notebook structure."""
from __future__ import annotations

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))


def cells(path: Path, tag: str | None = None) -> list:
    nb = nbformat.read(path, as_version=4)
    return [c for c in nb.cells if tag is None or tag in c.get("metadata", {}).get("tags", [])]
