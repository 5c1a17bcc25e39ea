"""The Stable Diffusion WebUI Forge adapter: what differs from the A1111 one (:mod:`hypersd.webui`), which it reuses."""
