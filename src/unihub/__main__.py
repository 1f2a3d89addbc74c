"""``python -m unihub`` is the ``unihub`` command."""

from .cli import entry

entry()
