"""Our routes in WebUI's HTTP server, under our own prefix: ``GET /hypersd/v1/schema`` (as adetailer serves
``/adetailer/v1/schema``).

Registered through ``script_callbacks.on_app_started``, which WebUI calls once the FastAPI app exists, with or
without ``--api``.  Like every route added this way it is not behind ``--api-auth``; it only describes arguments.
"""

from __future__ import annotations

from typing import Any

from hypersd.api_schema import SCHEMA_ROUTE, script_args_schema


def add_routes(_demo: Any, app: Any) -> None:
    """``on_app_started`` callback: (the gradio Blocks, the FastAPI app)."""

    async def schema() -> dict[str, Any]:
        return script_args_schema()

    app.add_api_route(SCHEMA_ROUTE, schema, methods=["GET"], summary="Hyper-SD: the JSON schema of the script args")


def register(script_callbacks: Any) -> None:
    script_callbacks.on_app_started(add_routes, name="hypersd api routes")
