"""The installed distribution's version of fusedrnn ("0+unknown" when run from a source tree)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fusedrnn")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"
