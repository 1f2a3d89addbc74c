"""``python -m unihub`` is the ``unihub`` command."""

import sys

from .cli import main

sys.exit(main())
