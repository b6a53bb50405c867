"""``python cli.py ...`` from a checkout is ``flowkit ...``. The typer app is ``flowkit/interface/cli.py``: the wheel
installs only the ``flowkit`` package, so the command line ships inside it (a top-level ``cli`` module in
site-packages would collide with other distributions)."""

import sys

from flowkit.interface import main
from flowkit.interface.cli import app

__all__ = ["app", "main"]

if __name__ == "__main__":
    sys.exit(main())
