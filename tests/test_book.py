"""The book builds from the committed notebook outputs, with warnings as errors."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) is None,
                    reason="jupyter-book is not installed in this environment")
def test_book_builds_without_warnings(tmp_path):
    exe = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(exe), "build", str(ROOT), "--path-output", str(tmp_path), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-4000:]
    html = tmp_path / "_build" / "html"
    for page in ["book/intro.html", "book/glossary.html", "notebooks/01_nanogpt.html"]:
        assert (html / page).exists(), f"{page} was not rendered"
    chapter = (html / "notebooks/01_nanogpt.html").read_text(encoding="utf-8")
    assert "colab.research.google.com" in chapter and "<img" in chapter  # launch button/badge and figures
