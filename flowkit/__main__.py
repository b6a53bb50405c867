"""``python -m flowkit ...`` is ``flowkit ...``."""

import sys

from flowkit.cli import main

sys.exit(main())
