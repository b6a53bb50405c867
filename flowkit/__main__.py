"""``python -m flowkit ...`` is ``flowkit ...``."""

import sys

from flowkit.interface import main

sys.exit(main())
