"""The package's command-line programs, each a module with ``main(argv=None)``: ``python -m eccentric_det.cli.<name>``
runs what ``tools/<name>.py`` runs (the tools are thin wrappers), so that an installed eccentric_det has them too.
The recipe (``eccentric_det.recipe``) runs its steps this way. Importing this package loads nothing."""
