"""`python -m exporter` runs the exporter."""

import sys

from exporter.cli import main

sys.exit(main())
