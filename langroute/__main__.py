"""``python -m langroute``: the same as the ``langroute`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
