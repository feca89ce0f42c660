import subprocess
import sys

import pytest
import torch

import nanoseek
from nanoseek.env import pick, scale


def test_scale_default_and_unknown(monkeypatch):
    monkeypatch.delenv("NANOSEEK_SCALE", raising=False)
    assert scale() == "tiny" and pick(1, 2) == 1
    monkeypatch.setenv("NANOSEEK_SCALE", "full")
    assert pick(1, 2) == 2
    monkeypatch.setenv("NANOSEEK_SCALE", "huge")
    with pytest.raises(ValueError, match="'huge'"):
        scale()


def test_seed_everything_repeats():
    nanoseek.seed_everything(3)
    a = torch.randn(4)
    nanoseek.seed_everything(3)
    assert torch.equal(a, torch.randn(4))


def test_doctor_cli_prints_versions():
    out = subprocess.run([sys.executable, "-m", "nanoseek", "doctor"], capture_output=True, text=True, check=True)
    for key in ("python", "torch", "transformers", "nanoseek", "device", "bf16", "fp8"):
        assert key in out.stdout
