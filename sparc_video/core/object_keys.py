"""What a storage object key may be: shared by the storage backends and settings
(SOURCE_KEY_PREFIXES), so core needs nothing from the storage package."""

from __future__ import annotations

# S3's own limit; the local backend keeps it too so keys are portable between backends.
MAX_KEY_BYTES = 1024


def validate_key(key: str) -> str:
    """Return `key` if it is a valid object key, else raise ValueError(description).

    The description is written for a person and is used as a FieldViolation description.
    """
    if not key:
        raise ValueError("must not be empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 text") from None
    if size > MAX_KEY_BYTES:
        raise ValueError(f"must be at most {MAX_KEY_BYTES} bytes of UTF-8 (is {size})")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in key):
        raise ValueError("must not contain control characters")
    if "\\" in key:
        raise ValueError("must not contain backslashes; separate folders with '/'")
    if "://" in key:
        raise ValueError("must be an object key inside the bucket, not a URL")
    if key.startswith("/"):
        raise ValueError("must be relative: no leading '/'")
    segments = key.split("/")
    if ".." in segments:
        raise ValueError("must not contain '..' path segments")
    # "a//b", "a/./b" and "a/" would name the same file as another key in the local backend.
    if "." in segments or "" in segments:
        raise ValueError("must not contain empty or '.' path segments, nor end with '/'")
    return key
