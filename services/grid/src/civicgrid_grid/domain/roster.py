"""Roster documents' rules the assignment relies on."""

from __future__ import annotations


def post_id(area: str, line: str) -> str:
    """A post's id: its area and line of work, so the posts of a grid are read by id."""
    return f"p{area}-{line}"
