"""The code stays `ruff` clean, formatted, and `mypy --strict` clean (configured in pyproject)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_lint_and_format() -> None:
    lint = run(str(BIN / "ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run(str(BIN / "ruff"), "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_strict() -> None:
    result = run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_architecture_contract_holds() -> None:
    """import-linter's contracts in pyproject: the layers, sparc_video never importing the
    workers, the workers never importing the API, client or CLI, core knowing no transport, and
    no import circles."""
    result = run(str(BIN / "lint-imports"))
    assert result.returncode == 0, result.stdout + result.stderr


# A module longer than this says why at its top, in a docstring paragraph starting with this.
MAX_LINES = 450
LONG_BECAUSE = "Long because"


def test_modules_stay_small_or_say_why_they_are_long() -> None:
    too_long = []
    for path in sorted([*ROOT.glob("sparc_video/**/*.py"), *ROOT.glob("workers/**/*.py")]):
        text = path.read_text()
        if text.count("\n") > MAX_LINES and LONG_BECAUSE not in text[:3000]:
            too_long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert not too_long, too_long


def test_the_documented_layers_are_the_contract() -> None:
    """docs/architecture.md's layer table lists pyproject's import-linter layers, row by row."""
    import re
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    layers = [
        sorted(name.strip().removeprefix("sparc_video.") for name in row.split("|"))
        for row in contract["layers"]
    ]
    doc = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| \d+(?: \((?:top|bottom)\))? \| ([^|]+) \|", doc, re.M)
    documented = [sorted(re.findall(r"`(\w+)`", row)) for row in rows]
    assert documented == layers
