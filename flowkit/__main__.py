"""``python -m flowkit ...`` is ``flowkit ...``."""

import sys

from flowkit.interface.cli import main

sys.exit(main())
