"""The package's command-line programs, each a module with ``main(argv=None)``: ``python -m eccentric_det.cli.<name>``
runs what ``tools/<name>.py`` runs (the tools are thin wrappers), so that an installed eccentric_det has them too.
The recipe (``eccentric_det.recipe``) runs its steps this way. Importing this package loads nothing; it quiets
torch's deprecation of ``torch.jit.script``, which Detectron2 and fvcore call on import (a warning for their
authors, not for a user of a command), so every tool imports it before them."""
import warnings

warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
