"""A bounded cache of fhir.resources validation results, keyed by the resource's content.

patient-view fires again and again on one open chart, and fhir.resources validation is most
of what a call costs. The key is a digest of the resource's JSON text and the FHIR version, so
a changed resource is validated again. Off by default (keying costs ~7 µs a resource, which a
chart seen once never earns back); the CDS Hooks service turns it on.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

Errors = tuple[dict[str, Any], ...]


class ValidationCache:
    def __init__(self, max_entries: int = 0) -> None:
        self._entries: OrderedDict[bytes, Errors] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def configure(self, max_entries: int) -> None:
        """Hold at most ``max_entries`` results (0 turns the cache off and empties it)."""
        if max_entries < 0:
            raise ValueError("max_entries must be 0 or more")
        with self._lock:
            self.max_entries = max_entries
            while len(self._entries) > max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(data: dict[str, Any], version: str) -> bytes | None:
        """The content key, or None when the resource cannot be written as JSON text."""
        try:
            text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            return None
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20)
        digest.update(version.encode())
        return digest.digest()

    def get(self, key: bytes) -> Errors | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
                self._entries.move_to_end(key)
            return found

    def put(self, key: bytes, errors: Errors) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._entries[key] = errors
            self._entries.move_to_end(key)
            if len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


VALIDATION_CACHE = ValidationCache()
"""The process's cache (off until ``configure_validation_cache`` turns it on)."""


def configure_validation_cache(max_entries: int) -> None:
    """Cache the validation of up to ``max_entries`` resources in this process (0: off)."""
    VALIDATION_CACHE.configure(max_entries)
