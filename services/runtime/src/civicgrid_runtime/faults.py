"""Named crash points for fault-injection tests.

A test starts a service with ``CIVICGRID_CRASH_AT=<point>[,<point>...]``; when the code reaches
``crash_point("<point>")`` the process dies at once with SIGKILL semantics (``os._exit``), exactly
as a killed pod would, without flushing or cleanup. In production the variable is unset and the
call is one dict lookup.
"""

from __future__ import annotations

import os
import sys

_POINTS = frozenset(p.strip() for p in os.environ.get("CIVICGRID_CRASH_AT", "").split(",") if p.strip())


def crash_point(name: str) -> None:
    if name in _POINTS:
        print(f"crash point {name!r} reached: exiting", file=sys.stderr, flush=True)
        os._exit(137)
