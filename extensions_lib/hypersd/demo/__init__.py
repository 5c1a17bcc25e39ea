"""``python -m hypersd demo``: the whole Hyper-SD recipe on a tiny built-in SD1.5, on the CPU (see cli.py)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Entry point called by ``hypersd.__main__`` (imports torch only when the demo runs)."""
    from hypersd.demo.cli import main as _main

    return _main(argv)


__all__ = ["main"]
