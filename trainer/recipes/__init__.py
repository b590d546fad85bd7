"""Built-in recipes (TOML package data)."""

__all__: list[str] = []
