"""Inference on the active slot for device apps: :func:`load_active`.

The handle re-reads the store's pointer (cheaply: one ``stat``) before a call, at most
every ``check_interval_s``; when another process (the agent) has activated a new slot it
loads that slot and swaps it in. If the new slot fails to load, the old model keeps
serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefleet.sdk import EdgefleetError

from ._store import ModelStore

if TYPE_CHECKING:
    from edgefleet.sdk import TrustPolicy

__all__ = ["ActiveModel", "NoActiveModelError", "load_active"]

log = logging.getLogger(__name__)


class NoActiveModelError(EdgefleetError):
    """The store has no active slot yet (nothing deployed)."""


class ActiveModel:
    """Follows the store's active slot. ``predict`` is thread-safe."""

    def __init__(
        self,
        store: ModelStore,
        *,
        trust: TrustPolicy | Callable[[], TrustPolicy] | None = None,
        backend: str | None = None,
        profile: str | None = None,
        cache: Any = None,
        check_interval_s: float = 0.5,
    ) -> None:
        self.store = store
        # The target profile that picks the runtime and artifact; None = detect this machine.
        self.profile = profile
        # A callable is resolved at the first load (keeps cryptography out of agent start-up).
        self._trust = trust
        self.backend = backend
        self.cache = cache
        self.check_interval_s = check_interval_s
        self._lock = threading.Lock()
        self._model: Any = None
        self._key: tuple[int, int] | None = None
        self._generation: int | None = None
        self._next_check = 0.0
        # LoadOptions fields set by resource adaptation (artifact, runtime options).
        self._overrides: dict[str, Any] = {}
        # The slot generation they were chosen for: a newly activated package loads its own
        # preferred choice (an artifact name of the old package may not exist in the new).
        self._overrides_for: int | None = None
        # Seconds a swapped-out model stays open for the requests still running on it.
        self.retire_grace_s = 0.0

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.store.pointer_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def refresh(self, force: bool = False) -> Any:
        """Load the active slot if it changed; return the current model (or None)."""
        now = time.monotonic()
        if not force and now < self._next_check and self._model is not None:
            return self._model
        with self._lock:
            self._next_check = now + self.check_interval_s
            key = self._stamp()
            if key == self._key and self._model is not None and not force:
                return self._model
            for _ in range(3):
                pointer = self.store.pointer()
                if pointer is None or not self.store.has_package(pointer.slot):
                    return self._model
                if self._model is not None and pointer.generation == self._generation:
                    self._key = key
                    return self._model
                model = self._load(pointer.slot, pointer.generation)
                if model is None:
                    self._key = key
                    return self._model
                # A load can take seconds; the agent may have switched (or rolled back)
                # meanwhile. Serve what the pointer says now, not what it said before.
                now_pointer = self.store.pointer()
                if now_pointer is not None and now_pointer.generation == pointer.generation:
                    break
                log.info("slot pointer moved during the load of slot %s; loading again",
                         pointer.slot)  # fmt: skip
                model.close()
                key = self._stamp()
            else:
                return self._model  # the pointer keeps moving: keep serving, retry later
            old, self._model = self._model, model
            self._key, self._generation = key, pointer.generation
            i = model.info
            log.info("serving %s %s from slot %s", i.name, i.version, pointer.slot)
        if old is not None:
            self._retire(old)
        return model

    def _load(self, slot: str, generation: int | None) -> Any:
        from edgefleet.sdk import LoadOptions, load

        try:
            return load(
                self.store.slot_dir(slot),
                self.backend,
                LoadOptions(
                    trust=self.trust,
                    cache=self.cache,
                    profile=self.profile,
                    # requests come from other processes: refuse NaN the manifest forbids
                    check_nan=True,
                    # Overrides were chosen for one slot's package: not for a new one.
                    **(self._overrides if generation == self._overrides_for else {}),
                ),
            )
        except EdgefleetError as e:
            log.error("cannot load slot %s, keeping the previous model: %s", slot, e)
            return None

    def _retire(self, old: Any) -> None:
        if self.retire_grace_s <= 0:
            old.close()
            return
        timer = threading.Timer(self.retire_grace_s, old.close)
        timer.daemon = True
        timer.start()

    def adapt(self, **overrides: Any) -> Any:
        """Reload the active slot with these LoadOptions fields (none: the preferred choice)
        and swap it in; returns the model now served."""
        with self._lock:
            pointer = self.store.pointer()
            self._overrides = dict(overrides)
            self._overrides_for = pointer.generation if pointer else None
            self._generation = None
        return self.refresh(force=True)

    @property
    def trust(self) -> TrustPolicy:
        if callable(self._trust):
            self._trust = self._trust()
        if self._trust is None:
            from edgefleet.sdk import TrustPolicy

            self._trust = TrustPolicy()
        return self._trust

    @property
    def model(self) -> Any:
        m = self.refresh()
        if m is None:
            raise NoActiveModelError(f"no active model in {self.store.root} (nothing deployed)")
        return m

    @property
    def loaded(self) -> Any:
        """The model currently in memory (None before the first call); no refresh."""
        return self._model

    @property
    def info(self) -> Any:
        return self.model.info

    def predict(self, inputs: Any) -> dict:
        return self.model.predict(inputs)

    def set_cache(self, cache: Any) -> None:
        """Use ``cache`` from the next load on (and reload now so it takes effect)."""
        with self._lock:
            self.cache = cache
            self._generation = None
        self.refresh(force=True)

    def close(self) -> None:
        with self._lock:
            if self._model is not None:
                self._model.close()
                self._model = None
                self._key = None


def load_active(
    store: ModelStore | str | Path,
    *,
    trust: TrustPolicy | None = None,
    backend: str | None = None,
    profile: str | None = None,
    check_interval_s: float = 0.5,
) -> ActiveModel:
    """A handle on the active model of a device's store that follows new activations.

    >>> model = load_active("/var/lib/edgefleet/store")
    >>> model.predict(x)["logits"]
    """
    if not isinstance(store, ModelStore):
        store = ModelStore(store)
    handle = ActiveModel(
        store, trust=trust, backend=backend, profile=profile, check_interval_s=check_interval_s
    )
    handle.refresh(force=True)
    return handle
