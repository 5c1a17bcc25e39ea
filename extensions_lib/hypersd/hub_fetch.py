"""The child process of one download: ``python -m hypersd.hub_fetch '<json>'`` runs huggingface_hub's own downloader.

A download runs here, not in WebUI's process, so that Cancel can stop it at once (the parent terminates this
process; huggingface_hub keeps its ``.incomplete`` file and resumes it with ``Range`` next time).  The argument
is ``{"repo", "filename", "revision", "local_dir", "endpoint", "timeout"}``.  The process talks JSON lines on stdout:

1. ``{"event": "metadata", "etag": ..., "size": ...}`` (the hub's HEAD answer), then it waits for ``go`` on
   stdin, so the parent can refuse before any byte of the body (a changed upstream file, no disk space);
2. ``{"event": "done", "path": ...}``, or ``{"event": "error", "kind": ..., "code": ..., "errno": ...,
   "reason": ...}`` with ``kind`` one of network / timeout / http / write / offline.

Everything else (endpoint, token, proxies, redirects, resume, the ``.incomplete`` file and its rename) is
huggingface_hub's, as installed in WebUI (0.36 in v1.10.1; 1.x/2.x work the same way through this API).
"""

from __future__ import annotations

import errno as errnos
import json
import sys

WRITE_ERRNOS = (errnos.ENOSPC, errnos.EACCES, errnos.EPERM, errnos.EROFS, errnos.ENOTDIR, errnos.EEXIST)


def _chain(error: BaseException) -> list[BaseException]:
    chain = [error]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and nxt not in chain:
        chain.append(nxt)
    return chain


def classify(error: BaseException) -> dict:
    """The failure as data (the parent words it): kind, HTTP status, errno and a one-line reason."""
    chain = _chain(error)
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    code = next((c for e in chain if (c := getattr(getattr(e, "response", None), "status_code", None))), None)
    number = next((e.errno for e in chain if isinstance(e, OSError) and e.errno in WRITE_ERRNOS), None)
    if code is not None:
        kind = "http"
    elif any(type(e).__name__ == "OfflineModeIsEnabled" for e in chain):
        kind = "offline"
    elif number is not None:
        kind = "write"
    elif any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        kind = "timeout"
    else:
        kind = "network"
    return {"event": "error", "kind": kind, "code": code, "errno": number, "reason": reason}


def _say(message: dict) -> None:
    print(json.dumps(message), flush=True)


def fetch(job: dict) -> dict:
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    where = {"repo_id": job["repo"], "filename": job["filename"], "revision": job["revision"]}
    try:
        meta = get_hf_file_metadata(hf_hub_url(**where, endpoint=job["endpoint"]), timeout=job["timeout"])
        _say({"event": "metadata", "etag": meta.etag, "size": meta.size})
        if sys.stdin.readline().strip() != "go":
            return {"event": "stopped"}
        path = hf_hub_download(**where, local_dir=job["local_dir"], endpoint=job["endpoint"])
    except Exception as error:  # noqa: BLE001 - every failure goes back to the parent as data
        return classify(error)
    return {"event": "done", "path": path}


if __name__ == "__main__":
    _say(fetch(json.loads(sys.argv[1])))
