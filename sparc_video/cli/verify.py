"""`sparc-video verify`: a downloaded export bundle against its signed manifest."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from sparc_video.cli.options import ExitCode, SparcCommand, client_exits
from sparc_video.cli.output import notice
from sparc_video.cli.runner import Session, UsageError, client_command
from sparc_video.client import AsyncExportClient
from sparc_video.evidence.bundle import (
    BundleError,
    HashMismatch,
    MissingFile,
    UnknownKey,
    verify_bundle,
)
from sparc_video.evidence.signing import keyring, parse_public_key, read_public_keys_file

# The first check that failed, most specific first.
BUNDLE_EXIT_CODES: tuple[tuple[type[BundleError], ExitCode], ...] = (
    (UnknownKey, ExitCode.UNKNOWN_KEY),
    (MissingFile, ExitCode.MISSING_FILE),
    (HashMismatch, ExitCode.HASH_MISMATCH),
    (BundleError, ExitCode.BAD_SIGNATURE),
)


@click.command(
    "verify",
    cls=SparcCommand,
    exit_codes=client_exits(*(code for _, code in BUNDLE_EXIT_CODES), OK="the bundle is valid"),
)
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="the service's public key(s): PEM (from GetManifestSigningKey; after a rotation, its "
    "keys concatenated) or base64; without it, the keys are fetched from the server at --target",
)
@client_command(AsyncExportClient)
async def verify(
    session: Session, client: AsyncExportClient, directory: Path, public_key: Path | None
) -> int:
    """Check a downloaded export bundle against its signed manifest.

    DIRECTORY is the folder `export download` wrote (or one attempt in it). Offline with
    --public-key."""
    if public_key is not None:
        try:
            keys = keyring(read_public_keys_file(public_key))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--public-key: {exc}") from None
    else:
        published = await client.get_manifest_signing_key()
        # Every key the service vouches for (current and retired): the signature names its own.
        pems = [k.public_key_pem for k in published.verification_keys] or [published.public_key_pem]
        keys = keyring(parse_public_key(pem) for pem in pems)
    try:
        bundle = await asyncio.to_thread(verify_bundle, directory, keys)
    except BundleError as exc:
        code = next(code for kind, code in BUNDLE_EXIT_CODES if isinstance(exc, kind))
        session.report({"valid": False, "error": {"kind": type(exc).__name__, "message": str(exc)}})
        notice(f"sparc-video: verify: INVALID: {exc}")
        return code
    if session.json:
        report = {
            "valid": True,
            "manifest": str(bundle.manifest_path),
            "export": bundle.manifest.get("export", ""),
            "keyId": bundle.key_id,
            "files": [
                {"path": str(f.path), "storageKey": f.storage_key, "sha256": f.sha256}
                for f in bundle.files
            ],
        }
        print(json.dumps(report, indent=2))
    else:
        print(
            f"valid: {bundle.manifest.get('export', '')}: signature by {bundle.key_id} ok, "
            f"{len(bundle.files)} output(s) match {bundle.manifest_path}"
        )
    return ExitCode.OK
