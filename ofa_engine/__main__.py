"""`python -m ofa_engine`: see `ofa_engine.cli`."""

import sys

from .cli import main

sys.exit(main())
