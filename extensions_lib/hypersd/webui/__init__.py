"""The WebUI adapter: the only part of hypersd that imports WebUI's ``modules`` and gradio.

``scripts/hyper_sd.py`` (loaded by WebUI) calls :func:`hypersd.webui.setup.setup` at import.
"""
