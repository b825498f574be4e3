"""Taking a fusedrnn model file apart and putting it back together, for the tests that forge files."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

from fusedrnn.interop.model_file import MAGIC, MODEL_VERSION


def split(data: bytes) -> tuple[dict, bytes]:
    """(header, tensor data) of a model file (a one-model file or a bundle)."""
    header_len = struct.unpack_from("<Q", data, 16)[0]
    start = -(-(24 + header_len) // 64) * 64
    return json.loads(data[24 : 24 + header_len]), data[start:-32]


def version(data: bytes) -> int:
    """The format version a model file's prefix gives."""
    return struct.unpack_from("<I", data, 12)[0]


def seal(header: Any, data: bytes, format_version: int = MODEL_VERSION) -> bytes:
    """A model file with this header and data, this format version in its prefix (a one-model file's,
    unless given: pass ``version(original)`` for a bundle's), and a correct checksum."""
    text = json.dumps(header).encode()
    body = struct.pack("<12sIQ", MAGIC, format_version, len(text)) + text
    body += b"\0" * (-len(body) % 64) + data
    return body + hashlib.sha256(body).digest()


def json_paths(obj: Any, path: tuple = ()) -> list[tuple]:
    """Every path to a value inside a JSON document (the root excluded)."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in items:
        out.append((*path, key))
        out += json_paths(value, (*path, key))
    return out
