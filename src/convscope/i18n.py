"""Languages for what convscope says to people: ``--lang en|es|fr|vi|zh`` (placeholder, see below)."""
from __future__ import annotations


def _(message: str) -> str:
    return message
