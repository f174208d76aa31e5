"""The processes a benchmark shares the machine with, and the CPU they spend."""

from __future__ import annotations

from pathlib import Path

import psutil


def infrastructure(state: Path) -> dict[str, psutil.Process]:
    """The local broker and store, from the pid files ``deploy/local/infra.py`` keeps in ``state``
    (absent when they run elsewhere)."""
    out = {}
    for name in ("kafka", "store"):
        try:
            out[name] = psutil.Process(int((state / f"{name}.pid").read_text()))
        except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
            pass
    return out


def cpu_seconds(procs: dict[str, psutil.Process]) -> dict[str, float]:
    """User + system CPU seconds each process has spent so far (gone ones left out)."""
    out = {}
    for name, pr in procs.items():
        try:
            t = pr.cpu_times()
            out[name] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out
