"""The checked-in stubs match the protos, and the protos pass buf's STANDARD lint."""

from __future__ import annotations

import filecmp
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / ".ci" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    _generator().generate(tmp_path)  # type: ignore[attr-defined]
    fresh = tmp_path / "sparc"
    checked_in = ROOT / "generated" / "sparc"
    fresh_files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    checked_files = sorted(
        p.relative_to(checked_in)
        for p in checked_in.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert checked_files == fresh_files, "run `.venv/bin/python .ci/gen_protos.py`"
    stale = [
        str(p) for p in fresh_files if not filecmp.cmp(fresh / p, checked_in / p, shallow=False)
    ]
    assert not stale, f"stubs differ from protos: {stale}; run `.venv/bin/python .ci/gen_protos.py`"


def test_buf_lint_passes() -> None:
    buf = shutil.which("buf", path=str(Path(sys.executable).parent)) or shutil.which("buf")
    if buf is None:
        pytest.fail("buf is missing: it comes with the `test` extra (buf-bin)")
    result = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
