"""Regenerate the checked-in Python stubs in generated/ from protos/.

Run: `.venv/bin/python .ci/gen_protos.py` (needs the `test` extra: grpcio-tools, mypy-protobuf).
`tests/test_generated_stubs.py` fails when the checked-in stubs differ from a fresh run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OWN_PROTOS = PROTO_ROOT / "sparc"


def generate(out_dir: Path) -> None:
    """Write the stubs for every proto under protos/sparc into out_dir."""
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    bindir = Path(sys.executable).parent
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in OWN_PROTOS.rglob("*.proto"))
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    subprocess.run(cmd, check=True, cwd=PROTO_ROOT)
    (out_dir / "sparc" / "video" / "v1" / "py.typed").write_text("")


def main() -> None:
    target = ROOT / "generated"
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "generated"
        generate(fresh)
        old = target / "sparc"
        if old.exists():
            shutil.rmtree(old)
        shutil.copytree(fresh / "sparc", old)
    print(f"stubs written to {target.relative_to(ROOT)}/sparc")


if __name__ == "__main__":
    main()
