"""The "Hyper-SD Models" tab: catalog entries with their status, downloads with progress, verification.

One :class:`~hypersd.download.DownloadManager` per WebUI process (:func:`get_manager`), writing into WebUI's own
folders: LoRAs into ``--lora-dir`` (the Lora extension's option; default ``models/Lora``), the SDXL-Turbo checkpoint
into ``--ckpt-dir`` (default ``models/Stable-diffusion``), the 1-step UNet into ``models/Unet`` (WebUI v1.10 has no
UNet folder of its own).  Hashes are cached in ``<extension>/hashes.json``.  When a download finishes, the Lora list
(or the "SD Unet" / checkpoint list) is refreshed, so a preset works without a restart.

The event functions (``on_*``, :func:`poll`) take the manager as an argument and return plain values, so they are
tested without gradio; :func:`create_tab` only wires them to gradio 3.41 components.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

from hypersd import models_view
from hypersd.download import DownloadManager
from hypersd.download_job import JobSnapshot
from hypersd.filehash import HashCache
from hypersd.webui.guard import guarded

EXTENSION_ROOT = Path(__file__).resolve().parents[3]
HASHES_FILE = EXTENSION_ROOT / "hashes.json"
TAB_ID = "hypersd_models"
POLL_SECONDS = 1.0
NO_CHANGE: dict = {"__type__": "update"}  # what gradio 3.41's gr.update() returns: leave the component as it is

_manager: DownloadManager | None = None
_manager_lock = threading.Lock()
_version = [0]  # bumped on every job event: lets poll() skip work when nothing happened


# ------------------------------------------------------------------------------------------------ folders


def webui_folders(kind: str, cmd_opts: Any, models_path: str) -> list[Path]:
    """Target folder first, then other folders WebUI reads that kind of file from."""
    if kind == "lora":
        folders = [getattr(cmd_opts, "lora_dir", None) or os.path.join(models_path, "Lora")]
        folders.append(getattr(cmd_opts, "lyco_dir_backcompat", None) or os.path.join(models_path, "LyCORIS"))
    elif kind == "checkpoint":
        folders = [getattr(cmd_opts, "ckpt_dir", None) or os.path.join(models_path, "Stable-diffusion")]
        folders.append(os.path.join(models_path, "Stable-diffusion"))
    elif kind == "unet":
        folders = [os.path.join(models_path, "Unet")]
    else:
        raise ValueError(f"Hyper-SD: unknown model kind {kind!r}")
    unique: list[Path] = []
    for folder in folders:
        if Path(folder) not in unique:
            unique.append(Path(folder))
    return unique


def refresh_lists(kind: str, modules: dict | None = None) -> str:
    """Make WebUI see a new file now: the Lora extension's list, the "SD Unet" list, or the checkpoint list."""
    modules = sys.modules if modules is None else modules
    if kind == "lora":
        networks = modules.get("networks")
        if networks is None or not hasattr(networks, "list_available_networks"):
            return "the Lora extension is not loaded"
        networks.list_available_networks()
        return "Lora list refreshed"
    if kind == "unet":
        sd_unet = modules.get("modules.sd_unet")
        if sd_unet is not None:
            sd_unet.list_unets()
        return "SD Unet list refreshed"
    sd_models = modules.get("modules.sd_models")
    if sd_models is not None:
        sd_models.list_models()
    return "checkpoint list refreshed"


def on_job_event(snapshot: JobSnapshot, manager: DownloadManager, modules: dict | None = None) -> None:
    """The manager's on_progress (worker thread): count events; on success refresh WebUI's list for that kind."""
    _version[0] += 1
    if snapshot.state == "done":
        kind = manager.entry(snapshot.entry_id).kind
        print(f"Hyper-SD: {refresh_lists(kind, modules)} after downloading {snapshot.entry_id}")


def get_manager() -> DownloadManager:
    """The process-wide manager (created on first use from WebUI's command-line folders and the environment)."""
    global _manager
    with _manager_lock:
        if _manager is None:
            from modules import paths, shared

            def target(kind: str) -> Path:
                return webui_folders(kind, shared.cmd_opts, paths.models_path)[0]

            def search(kind: str) -> list[Path]:
                return webui_folders(kind, shared.cmd_opts, paths.models_path)[1:]

            holder: list[DownloadManager] = []
            # endpoint/token None: HF_ENDPOINT, HF_TOKEN (or the stored login) and proxies come from the environment.
            from hypersd.webui import profile

            manager = DownloadManager(
                target,
                catalog=profile.current().catalog,  # Forge's also lists the Hyper-FLUX files
                search_dirs=search,
                hash_cache=HashCache(HASHES_FILE),
                on_progress=lambda snapshot: on_job_event(snapshot, holder[0]),
            )
            holder.append(manager)
            _manager = manager
        return _manager


# ------------------------------------------------------------------------------------------------ events


def _names(manager) -> dict[str, str]:
    return {entry.id: entry.local_filename for entry in manager.entries()}


def snapshot_view(manager) -> tuple[list[list[str]], str]:
    return models_view.table(models_view.build_rows(manager)), models_view.progress_text(manager, _names(manager))


def on_refresh(manager):
    table, progress = snapshot_view(manager)
    return table, progress, _version[0]


def on_download(manager, entry_ids, allow_unverified):
    message = models_view.start_downloads(manager, entry_ids, allow_unverified)
    table, progress = snapshot_view(manager)
    return message, table, progress


def on_cancel(manager, entry_ids):
    message = models_view.cancel_downloads(manager, entry_ids)
    table, progress = snapshot_view(manager)
    return message, table, progress


def on_verify(manager, entry_ids):
    message = models_view.verify(manager, entry_ids)  # hashes: runs in gradio's worker, only when asked
    table, progress = snapshot_view(manager)
    return message, table, progress


def on_manual(manager, entry_ids):
    if not entry_ids:
        return "Hyper-SD: select one or more entries first."
    return models_view.manual_steps(manager, entry_ids)


def poll(manager, seen_version):
    """Timer tick: new table and progress while jobs run or after any job event; no change (and no work) otherwise."""
    version = _version[0]
    if version == seen_version and not models_view.any_active(manager):
        return NO_CHANGE, NO_CHANGE, seen_version
    table, progress = snapshot_view(manager)
    return table, progress, version


def folders_text(manager) -> str:
    kinds = sorted({entry.kind for entry in manager.entries()})
    lines = [f"- {kind}: `{manager.target_dir(entry)}`" for kind in kinds
             for entry in [next(e for e in manager.entries() if e.kind == kind)]]  # fmt: skip
    return (
        f"Files come from `{manager.endpoint}` (set `HF_ENDPOINT` for a mirror; `HF_TOKEN` and proxy variables are "
        "honoured) and are saved to:\n" + "\n".join(lines)
    )


# ------------------------------------------------------------------------------------------------ gradio


def create_tab():
    """``on_ui_tabs`` callback: [(blocks, title, elem_id)]."""
    import gradio as gr

    manager = get_manager()
    ids = [entry.id for entry in manager.entries()]
    table, progress = snapshot_view(manager)
    with gr.Blocks(analytics_enabled=False) as tab:
        gr.Markdown(
            "Files for the Hyper-SD presets. Status is read without hashing; press **Verify** to hash the selected "
            "files (slow for big files). A file already present under another name is recognised by its hash."
        )
        table_box = gr.Dataframe(
            value=table, headers=list(models_view.HEADERS), interactive=False, wrap=True, elem_id=f"{TAB_ID}_table"
        )
        selected = gr.CheckboxGroup(choices=ids, label="Entries", elem_id=f"{TAB_ID}_select")
        allow = gr.Checkbox(
            False,
            label="Accept a file whose hash differs from an unconfirmed (B / B+) catalog hash",
            elem_id=f"{TAB_ID}_allow_unverified",
        )
        with gr.Row():
            download = gr.Button("Download", variant="primary", elem_id=f"{TAB_ID}_download")
            cancel = gr.Button("Cancel", elem_id=f"{TAB_ID}_cancel")
            verify = gr.Button("Verify", elem_id=f"{TAB_ID}_verify")
            manual = gr.Button("Manual download steps", elem_id=f"{TAB_ID}_manual")
            refresh = gr.Button("Refresh", elem_id=f"{TAB_ID}_refresh")
        message = gr.Markdown(elem_id=f"{TAB_ID}_message")
        progress_box = gr.Markdown(progress, elem_id=f"{TAB_ID}_progress")
        gr.Markdown(folders_text(manager), elem_id=f"{TAB_ID}_folders")
        seen = gr.State(_version[0])

        with_table = [message, table_box, progress_box]
        download.click(guarded(lambda i, a: on_download(get_manager(), i, a), "Download", outputs=3), [selected, allow],
                       with_table)  # fmt: skip
        cancel.click(guarded(lambda i: on_cancel(get_manager(), i), "Cancel", outputs=3), [selected], with_table)
        verify.click(guarded(lambda i: on_verify(get_manager(), i), "Verify", outputs=3), [selected], with_table)
        manual.click(guarded(lambda i: on_manual(get_manager(), i), "Manual download steps"), [selected], [message])
        refresh.click(guarded(lambda: on_refresh(get_manager()), "Refresh", message_at=None), None,
                      [table_box, progress_box, seen])  # fmt: skip
        tab.load(lambda v: poll(get_manager(), v), [seen], [table_box, progress_box, seen], every=POLL_SECONDS)
    return [(tab, models_view.TAB_TITLE, TAB_ID)]


def register(script_callbacks) -> None:
    script_callbacks.on_ui_tabs(create_tab, name="hypersd models tab")
