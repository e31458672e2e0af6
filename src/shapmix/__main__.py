"""``python -m shapmix`` (what ``torchrun -m shapmix`` runs)."""

import sys

from .cli import main

sys.exit(main())
