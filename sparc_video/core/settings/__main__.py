"""`python -m sparc_video.core.settings --markdown > docs/configuration.md`; `--help-text` prints
the environment section of `sparc-video --help`."""

from __future__ import annotations

import sys

from sparc_video.core.settings.reference import environment_help, markdown


def main(argv: list[str]) -> int:
    if argv == ["--markdown"]:
        sys.stdout.write(markdown())
    elif argv == ["--help-text"]:
        sys.stdout.write(environment_help())
    else:
        sys.stderr.write("usage: python -m sparc_video.core.settings --markdown | --help-text\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
