"""The loaded-model cache: one loaded Model per (package file state, backend, options), so
a device app or the agent never reloads a model per call."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from ._errors import ConfigError
from ._load import LoadOptions, load
from ._model import Model

__all__ = ["ModelCache"]


class ModelCache:
    """LRU of loaded models. A package file that changes on disk (mtime/size) is reloaded."""

    def __init__(self, max_models: int = 4) -> None:
        if max_models < 1:
            raise ConfigError(f"max_models must be >= 1, got {max_models}")
        self.max_models = max_models
        self._models: OrderedDict[tuple, Model] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(
        self, path: str | Path, backend: str | None = None, options: LoadOptions | None = None
    ) -> Model:
        p = Path(path).resolve()
        st = (p / "manifest.json").stat() if p.is_dir() else p.stat()
        key = (str(p), st.st_mtime_ns, st.st_size, backend, options)
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            model = load(p, backend, options)
            self.loads += 1
            self._models[key] = model
            while len(self._models) > self.max_models:
                _, old = self._models.popitem(last=False)
                old.close()
            return model

    def close(self) -> None:
        with self._lock:
            for m in self._models.values():
                m.close()
            self._models.clear()
