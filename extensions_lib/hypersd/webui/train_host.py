"""What the Train tab needs from WebUI: checkpoints, folders, GPUs, the queue lock, VRAM, the Lora list.

:class:`WebUIHost` is the only place that touches ``modules.*`` for training; the tab's event functions take a host
object, so the tests hand them a stand-in with the same methods.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any

from hypersd.train.controller import Hooks, Job

WORK_FOLDER = "Hyper-SD-train"  # under WebUI's models folder: not scanned by the Lora or checkpoint lists


class WebUIHost:
    """Reads and changes WebUI's state for the Train tab (all imports lazy: constructed inside WebUI only)."""

    def checkpoints(self) -> dict[str, str]:
        """title → file path, as in WebUI's checkpoint dropdown."""
        from modules import sd_models

        return {title: info.filename for title, info in sd_models.checkpoints_list.items()}

    def refresh_checkpoints(self) -> None:
        from modules import sd_models

        sd_models.list_models()

    def current_checkpoint(self) -> str | None:
        from modules import shared

        loaded = getattr(getattr(_loaded_model(), "sd_checkpoint_info", None), "title", None)
        return loaded or getattr(shared.opts, "sd_model_checkpoint", None)

    def lora_dir(self) -> pathlib.Path:
        from modules import paths, shared

        from hypersd.webui.models_panel import webui_folders

        return webui_folders("lora", shared.cmd_opts, paths.models_path)[0]

    def work_dir(self) -> pathlib.Path:
        from modules import paths

        return pathlib.Path(paths.models_path) / WORK_FOLDER

    def gpu_count(self) -> int:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def python(self) -> str:
        return sys.executable

    def tokenizer_dir(self) -> str | None:
        """The host's own tokenizer files for single-file checkpoints (Forge ships them), else None."""
        from modules import paths

        from hypersd.webui import profile

        return shipped_tokenizer_dir(paths.script_path, profile.current().tokenizer_dir)

    def refresh_loras(self) -> str:
        from hypersd.webui.models_panel import refresh_lists

        return refresh_lists("lora")

    def hooks(self, *, free_vram: bool, compare: dict[str, Any] | None) -> Hooks:
        return WebUIHooks(free_vram=free_vram, compare=compare)


def shipped_tokenizer_dir(webui_dir: str, relative: str | None) -> str | None:
    """``webui_dir/relative`` when it holds ``tokenizer/vocab.json`` (an older or trimmed host may not)."""
    if relative is None:
        return None
    folder = pathlib.Path(webui_dir) / relative
    return str(folder) if (folder / "tokenizer" / "vocab.json").is_file() else None


def _loaded_model() -> Any:
    """The loaded model without triggering a load (``shared.sd_model`` would load one)."""
    sd_models = sys.modules.get("modules.sd_models")
    data = getattr(sd_models, "model_data", None)
    return getattr(data, "sd_model", None)


def _on_gpu(model: Any) -> bool:
    try:
        return next(model.parameters()).device.type not in ("cpu", "meta")
    except (StopIteration, AttributeError):
        return False


class WebUIHooks(Hooks):
    """Around a job: wait for WebUI's queue and hold it, move the model to RAM; afterwards bring it back, refresh
    the Lora list, make the comparison grid, and let the queue go."""

    def __init__(self, *, free_vram: bool, compare: dict[str, Any] | None) -> None:
        self.free_vram = free_vram
        self.compare = compare
        self.locked = False
        self.moved: Any = None

    def before(self, job: Job) -> str | None:
        if not self.free_vram:
            return (
                "WebUI's model stays where it is and generation keeps working during training "
                "(both need memory: lower the batch size if the GPU runs out)."
            )
        from modules.call_queue import queue_lock

        queue_lock.acquire()  # waits for a running generation; later ones wait for us
        self.locked = True
        model = _loaded_model()
        if model is not None and _on_gpu(model):
            from modules import sd_models

            sd_models.unload_model_weights(model)
            self.moved = model
            return (
                "WebUI's model was moved to RAM to free the GPU for training; txt2img/img2img and API requests "
                "wait in WebUI's queue until training ends (Cancel to generate sooner)."
            )
        return "Generation requests wait in WebUI's queue until training ends (Cancel to generate sooner)."

    def after(self, job: Job) -> str | None:
        notes = []
        try:
            if self.moved is not None:
                from modules import sd_models

                sd_models.send_model_to_device(self.moved)
                notes.append("WebUI's model is back on the GPU.")
            if job.result == "done":
                notes.append(WebUIHost().refresh_loras())
                if self.compare is not None:
                    from hypersd.webui.train_compare import comparison_grid

                    try:
                        job.comparison = comparison_grid(job, **self.compare, lock_held=self.locked)
                        notes.append(f"Comparison grid: {job.comparison}")
                    except Exception as err:  # noqa: BLE001 - the LoRA is fine; say why the grid is missing
                        notes.append(f"Hyper-SD: the comparison grid failed: {err}")
        finally:
            if self.locked:
                from modules.call_queue import queue_lock

                queue_lock.release()
                self.locked = False
                notes.append("Generation requests run again.")
        return " ".join(notes) or None
