"""How many examples this project's property tests draw.

`make test` draws a third of each test's full count (at least 10); with
``HYPOTHESIS_PROFILE=thorough`` in the environment, every test draws its full count.
"""

from __future__ import annotations

import os

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE", "") == "thorough"


def examples(full: int) -> int:
    """The number of examples to draw for a test whose full count is ``full``."""
    return full if THOROUGH else max(10, full // 3)
