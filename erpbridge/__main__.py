"""``python -m erpbridge``: the ``erpbridge`` command (a launcher only; the core itself imports
nothing of the command's package, see ``[tool.importlinter]`` in ``pyproject.toml``)."""

from erpbridge_cli.cli import main

main()
