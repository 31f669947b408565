"""`python -m benchmarks.control_plane`: see the package's docstring."""

import sys

from benchmarks.control_plane.cli import main

if __name__ == "__main__":
    sys.exit(main())
