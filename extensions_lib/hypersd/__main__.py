"""Command line: ``python -m hypersd <command>``.

Commands are loaded lazily so that ``python -m hypersd --help`` stays instant and the
training dependencies are imported only by the commands that need them.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "demo": ("hypersd.demo", "Distil a tiny built-in model on the CPU and report what it buys at 1-8 steps."),
    "distill": ("hypersd.distill.cli", "Distil a Stable Diffusion model into a few-step LoRA with TSCD."),
    "samplers": ("hypersd.compare", "Compare TCD, DPM++ SDE and Euler on a tiny random model."),
}


def _usage() -> str:
    lines = ["usage: python -m hypersd <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"hypersd: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
