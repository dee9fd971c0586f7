"""``python -m tta`` runs the command-line interface."""

import sys

from tta.cli import main

sys.exit(main())
