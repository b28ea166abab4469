"""``python -m reproduce``: see ``reproduce.cli`` for the commands."""

from __future__ import annotations

import sys

from reproduce.cli import main

if __name__ == "__main__":
    sys.exit(main())
