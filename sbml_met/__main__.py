"""``python -m sbml_met`` runs the ``sbml-met`` command line."""

import sys

from .cli import main

sys.exit(main())
