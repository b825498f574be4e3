"""How every model runs the compiled stack: fusedrnn's layers, cells and streams, and ``fusedrnn.torch``.

A ``Runtime`` owns one compiled stack (one of ``_core.stacks``), which keeps its own packed copy of the
weights, and knows which weights that copy holds by a key. A call names the weights it needs; when the stack
holds others, the call waits until the calls in flight have finished, uploads, then runs. Any number of
calls with the same weights run at once (the kernels release the GIL); an upload never happens during
a call.

Two ways to name the weights:

- owned arrays (layers, cells, streams): the model keeps one NumPy array per parameter, gives them to
  the runtime once, changes them in place and says so (``changing()``, ``mark_changed()``); the key is
  the runtime's ``version``, the number of changes so far. ``begin_call()`` takes no argument.
- per call (``fusedrnn.torch``): ``begin_call(weights, key)`` with a function that reads the arrays
  (called only to upload) and a key that identifies them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import _core, _threads
from ._config import StackConfig

__all__ = ["Runtime", "compiled_config", "new_stack"]


def compiled_config(config: StackConfig, module: Any = _core) -> Any:
    """``config`` as ``module``'s compiled ``StackConfig``: the two take the same fields, by name."""
    return module.StackConfig(
        **{field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    )


def new_stack(config: StackConfig, double: bool) -> _core.StackBase:
    """The compiled stack for ``config``, computing in float64 when ``double``, else in float32."""
    compiled = compiled_config(config)
    return _core.stacks["float64" if double else "float32"](compiled)


class Runtime:
    """One compiled stack, the key of the weights it holds, and the calls running on it.

    ``lock`` is held for every change of this state; owners also hold it to read or write their weights
    consistently (a copy of the model is not torn by a concurrent load). It is not reentrant.
    """

    def __init__(
        self, config: StackConfig, double: bool, weights: Sequence[np.ndarray] | None = None
    ) -> None:
        self.config = config
        self.double = double
        self.stack = new_stack(config, double)
        self.lock = threading.Condition(threading.Lock())
        self._owned = None if weights is None else list(weights)
        self._version = 0
        self._held: Any = None  # the key of the weights in the stack; None before an upload succeeds
        # What the last upload read, kept while the stack holds it: the objects a key identifies by
        # address stay alive, so another object cannot take the address and look unchanged.
        self._uploaded: Any = None
        self._active = 0
        # The owned weights changed since the last upload (see refresh).
        self._dirty = True

    # -- changes of owned weights ----------------------------------------------------------------------

    @property
    def version(self) -> int:
        """The number of times the owned weights were declared changed."""
        return self._version

    def mark_changed(self) -> None:
        """Declare the owned arrays changed: the next call uploads them first."""
        with self.lock:
            self._changed()

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Hold the lock while the owned arrays are written, then declare them changed."""
        with self.lock:
            yield
            self._changed()

    def _changed(self) -> None:
        self._version += 1
        self._dirty = True

    # -- calls ---------------------------------------------------------------------------------------

    def begin_call(self, weights: Callable[[], Sequence[np.ndarray]] | None = None, key: Any = None) -> Any:
        """Hold the stack for one call and return the key of the weights it runs with; pair with
        ``end_call``. Without arguments the weights are the owned arrays and the key their version;
        otherwise ``weights()`` reads the arrays, in the kernels' order, when they must be uploaded."""
        _threads.follow_environment()
        with self.lock:
            while self._held != self._wanted(key) and self._active:
                self.lock.wait()
            wanted = self._wanted(key)
            if self._held != wanted:
                self._upload(wanted, weights)
            self._active += 1
            return wanted

    def end_call(self) -> None:
        with self.lock:
            self._active -= 1
            if self._active == 0:
                self.lock.notify_all()

    def refresh(self) -> None:
        """Upload the owned arrays if they changed since the last upload, once the calls in flight with the
        old weights have finished. The compiled stream step (``_core.StreamBase``) calls it before every
        step (and the thread count follows the environment, as for every call)."""
        _threads.follow_environment()
        if self._dirty:
            self.begin_call()
            self.end_call()

    def upload_if_idle(self) -> None:
        """Upload changed owned arrays now, unless calls are running (then the next call does it): loading
        weights, not the first call after, pays for packing them."""
        with self.lock:
            if self._held != self._version and not self._active:
                self._upload(self._version, None)

    def _wanted(self, key: Any) -> Any:
        return self._version if key is None else key

    def _upload(self, key: Any, weights: Callable[[], Sequence[np.ndarray]] | None) -> None:
        self._held = None  # not valid until the upload has succeeded
        arrays = self._owned if weights is None else weights()
        self.stack.set_weights(arrays)
        self._uploaded = arrays
        self._held = key
        if weights is None:
            self._dirty = False
