"""Progress bars on stderr (tqdm) for the command line and the demo, silent when disabled
or when stderr is not a terminal."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Protocol

#: Below this many items a bar is not worth drawing.
PROGRESS_MIN = 10_000


class ProgressBar(Protocol):
    """The part of a tqdm bar this module uses."""

    def update(self, n: int = 1) -> object:
        """Advance the bar by `n`."""

    def close(self) -> None:
        """Finish the bar."""


class _NoBar:
    """A progress bar that shows nothing."""

    def update(self, n: int = 1) -> object:
        """Do nothing."""
        return None

    def close(self) -> None:
        """Do nothing."""


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "leaf") -> ProgressBar:
    """A tqdm bar on stderr, or a silent stand-in when disabled or stderr is not a terminal."""
    if not enabled or not sys.stderr.isatty():
        return _NoBar()
    tqdm: Any = importlib.import_module("tqdm").tqdm  # untyped library: keep it Any
    bar: ProgressBar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True,
                            file=sys.stderr, dynamic_ncols=True, leave=False)
    return bar


class PhaseProgress:
    """A ProgressCallback that shows one tqdm bar per phase (verify, replay, ...)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._phase: str | None = None
        self._bar: ProgressBar = _NoBar()
        self._done = 0

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self._phase:
            self._bar.close()
            self._phase = phase
            self._bar = progress_bar(total, phase, self.enabled and total >= PROGRESS_MIN,
                                     unit="node")
            self._done = 0
        self._bar.update(done - self._done)
        self._done = done

    def close(self) -> None:
        """Close the current bar."""
        self._bar.close()
