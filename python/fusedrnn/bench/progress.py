"""The progress of a run and the time left, on stderr.

On a terminal: one line, redrawn in place (``\\r``) at most every REDRAW_S seconds and erased at the end,
so the report that follows starts on a clean line. Elsewhere (a CI log, a file): a plain line at most
every PLAIN_EVERY_S seconds, so a short run prints none and a long one shows it is alive without flooding
the log. The command line turns it off for machine-readable output (``--json -``) and ``--no-progress``.

The time left is the time so far scaled by the work left over the work done: the work is counted in
units (one workload at one thread count, the one-step section, one memory measurement), each unit
advancing with its timed rounds; "estimating" until the first part of a unit is done.
"""

from __future__ import annotations

import time
from typing import Callable, TextIO

REDRAW_S = 0.2
PLAIN_EVERY_S = 30.0
# The line is cut to this many columns: a longer one would wrap, and "\r" would then redraw only its end.
WIDTH = 79


def format_duration(seconds: float) -> str:
    """'45s', '2m05s', '1h02m': rounded up to 5 s under 10 minutes, to the minute above."""
    seconds = max(0.0, seconds)
    if seconds < 600:
        total = int(-(-seconds // 5) * 5)
        minutes, secs = divmod(total, 60)
        return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
    total_min = int(-(-seconds // 60))
    hours, minutes = divmod(total_min, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


class Progress:
    """Progress through ``total`` units of work, written to ``stream`` (None: nothing is written).

    tty: redraw one line in place (default: whether ``stream`` is a terminal); clock: seconds, monotonic
    (tests pass a fake one)."""

    def __init__(
        self,
        stream: TextIO | None,
        total: float,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.total = max(float(total), 1e-9)
        self.tty = bool(tty if tty is not None else (stream is not None and _isatty(stream)))
        self.clock = clock
        self.start = clock()
        self._last_write: float | None = None
        self._drawn = 0  # columns of the line on the terminal now

    def left_s(self, done: float) -> float | None:
        """Seconds left at ``done`` units, from the pace so far; None before any work is done."""
        elapsed = self.clock() - self.start
        if done <= 0 or elapsed <= 0:
            return None
        return elapsed * (self.total - min(done, self.total)) / done

    def line(self, done: float, label: str) -> str:
        left = self.left_s(done)
        eta = "estimating time left" if left is None else f"about {format_duration(left)} left"
        percent = 100.0 * min(done, self.total) / self.total
        return f"bench {percent:3.0f}%  {eta}  {label}"

    def update(self, done: float, label: str) -> None:
        """``done`` units of ``total`` are done; ``label`` says what runs now."""
        if self.stream is None:
            return
        now = self.clock()
        if self.tty:
            if self._last_write is not None and now - self._last_write < REDRAW_S:
                return
            text = self.line(done, label)[:WIDTH]
            self.stream.write("\r" + text + " " * max(0, self._drawn - len(text)))
            self._drawn = len(text)
        else:
            if now - (self.start if self._last_write is None else self._last_write) < PLAIN_EVERY_S:
                return
            self.stream.write(self.line(done, label) + "\n")
        self.stream.flush()
        self._last_write = now

    def close(self) -> None:
        """Erase the terminal line (the report follows on stdout, often the same terminal)."""
        if self.stream is not None and self.tty and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
