"""Command line: ``cryocare <command> ...`` and the cryoCARE 0.3.0 scripts.

A thin layer over the library, in rooms of its own:

* :mod:`~cryocare.cli.options` — the option groups and the one mapping from
  options to library settings (recipe, budget, prediction options);
* :mod:`~cryocare.cli.checks` — input and output checks that run before the
  deep-learning backend is loaded;
* :mod:`~cryocare.cli.app` — logging, the one error wrapper, the quiet
  backend start;
* :mod:`~cryocare.cli.commands` — the subcommands; :mod:`~cryocare.cli.star`
  the ``--star`` (RELION 5) face; :mod:`~cryocare.cli.scripts` the cryoCARE
  scripts.

Bad input ends with one line on stderr and exit status 2; ``main`` never
raises for user errors, so it can be called from tests and other programs:
``main(["predict", "--help"])``.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
