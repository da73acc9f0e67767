"""Entry point for `python3 -m convcheck` and `python3 .../convcheck/__main__.py`."""

import os
import sys

if not __package__:  # run as a script path: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from convcheck.cli import main

if __name__ == "__main__":
    sys.exit(main())
