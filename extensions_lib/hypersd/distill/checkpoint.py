"""Training checkpoints that resume a run exactly.

Layout under the run folder::

    checkpoints/step-000120/state.pt      LoRA, EMA, optimizer(s), discriminator, counters, config (rank 0)
    checkpoints/step-000120/rng-0.pt ...  RNG states of every process (python, numpy, torch, cuda, our generators)
    checkpoints/latest                    the name of the last complete checkpoint, written last and atomically

A run killed while writing leaves ``latest`` pointing at the previous complete checkpoint.
"""

from __future__ import annotations

import pathlib
import random
import shutil
from typing import Any

import numpy as np
import torch

from hypersd.train import layout

from .export import atomic_write

LATEST = layout.LATEST


class CheckpointError(RuntimeError):
    pass


def capture_rng(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "generators": {name: g.get_state() for name, g in generators.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in generators.items():
        g.set_state(state["generators"][name])


def _torch_save(obj: Any, path: pathlib.Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_rng(folder: pathlib.Path, rank: int, generators: dict[str, torch.Generator]) -> None:
    _torch_save(capture_rng(generators), folder / f"rng-{rank}.pt")


def save_state(folder: pathlib.Path, state: dict[str, Any]) -> None:
    _torch_save(state, folder / layout.STATE)


checkpoint_folder = layout.checkpoint_folder


def mark_latest(run_dir: pathlib.Path, folder: pathlib.Path, keep: int = 1) -> None:
    """Point ``latest`` at ``folder`` (atomic), then remove older checkpoints beyond ``keep``."""
    pointer = layout.latest_pointer(run_dir)
    atomic_write(pointer, lambda tmp: pathlib.Path(tmp).write_text(folder.name, encoding="utf-8"))
    older = sorted(p for p in pointer.parent.iterdir() if layout.is_checkpoint_folder(p) and p != folder)
    for old in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(run_dir: pathlib.Path) -> pathlib.Path | None:
    folder = layout.latest_folder(run_dir)
    if folder is None:
        return None
    if not (folder / layout.STATE).is_file():
        raise CheckpointError(
            f"Hyper-SD: checkpoint {folder} named by {layout.latest_pointer(run_dir)} is incomplete (no state.pt)"
        )
    return folder


def load_state(folder: pathlib.Path) -> dict[str, Any]:
    return torch.load(folder / layout.STATE, map_location="cpu", weights_only=False)


def load_rng(folder: pathlib.Path, rank: int) -> dict[str, Any]:
    path = folder / f"rng-{rank}.pt"
    if not path.is_file():
        raise CheckpointError(
            f"Hyper-SD: {path} is missing: the checkpoint was written by fewer processes; resume with the same "
            "--num_processes as the original run"
        )
    return torch.load(path, map_location="cpu", weights_only=False)
