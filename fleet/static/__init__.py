"""Dashboard files served by the fleet at /ui (package data; no CDN)."""

__all__: list[str] = []
