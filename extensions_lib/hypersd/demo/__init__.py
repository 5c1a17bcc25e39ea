"""``python -m hypersd demo``: TSCD vs one-shot consistency distillation of a tiny built-in model, on the CPU."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Entry point called by ``hypersd.__main__`` (imports torch only when the demo runs)."""
    from hypersd.demo.cli import main as _main

    return _main(argv)


__all__ = ["main"]
