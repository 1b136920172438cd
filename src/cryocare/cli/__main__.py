"""``python -m cryocare.cli``."""

import sys

from .main import main

sys.exit(main())
