"""``python -m eccentric_det.recipe ...``: the recipe's command line (as ``tools/train_eccentric.py``)."""
import sys

from .cli import main

sys.exit(main())
