"""Allow ``python -m ripple_local``."""

import sys

from ripple_local.cli import main

sys.exit(main())
