"""``python -m panoplace`` runs the CLI."""

import sys

from panoplace.cli import main

sys.exit(main())
