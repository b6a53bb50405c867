"""``python -m flowkit ...`` is ``flowkit ...``."""

import sys

from cli import main

sys.exit(main())
