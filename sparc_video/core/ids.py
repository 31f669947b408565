"""Identifiers for exports, cameras, recordings and uploads."""

from __future__ import annotations

import time
import uuid


def new_id() -> str:
    """12 hex digits of milliseconds then 8 random: unique, and sorting by id sorts by age."""
    return f"{int(time.time() * 1000):012x}{uuid.uuid4().hex[:8]}"
