"""The arq worker of sparc-video: `arq workers.WorkerSettings` runs it.

`WorkerSettings` is built on first access from the environment, so importing `workers` (e.g.
for `workers.pipeline`) reads no configuration.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "WorkerSettings":
        from sparc_video.core.settings import Settings
        from workers.job.settings import settings_class

        value = settings_class(Settings.from_env())
        globals()[name] = value
        return value
    raise AttributeError(name)
