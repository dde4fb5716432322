"""Kernel pointers are secrets (KASLR): sources hash them with a per-trace random key.

The same pointer maps to the same token within one trace (so identities still join up), but
tokens from different traces cannot be correlated and the raw address cannot be recovered.
"""

from __future__ import annotations

import hashlib
import os


class PointerHasher:
    """Keyed BLAKE2b of a pointer value -> short printable token like ``p:3fa9c01d2b7e``."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(16)
        self._cache: dict[int, str] = {}

    @property
    def key_id(self) -> str:
        """Identifies the key (not the key itself) so two files of one recording can be matched."""
        return hashlib.blake2b(self._key, digest_size=4, person=b"mdtrace-kid").hexdigest()

    def __call__(self, ptr: int) -> str:
        if not ptr:
            return ""
        tok = self._cache.get(ptr)
        if tok is None:
            digest = hashlib.blake2b(ptr.to_bytes(8, "little"), key=self._key, digest_size=6)
            tok = "p:" + digest.hexdigest()
            if len(self._cache) < 1 << 16:
                self._cache[ptr] = tok
        return tok
