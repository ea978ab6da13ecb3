"""Progress on stderr for long jobs (`edgerec build`, `add`, and the export stage)."""

from __future__ import annotations

import sys
from typing import Any

import click


class StageProgress:
    """One click progress bar per stage of a long job, on stderr; called as progress(stage, done, total)."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._stage = ""
        self._shown = 0

    def __enter__(self) -> "StageProgress":
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self._stage:
            self._close()
            self._stage, self._shown = stage, 0
            # show_pos: "12288/1000000" tells how big the job is, not only how far along.
            self._bar = click.progressbar(length=total, label=f"{stage:<9}", file=sys.stderr, show_pos=True)
            self._bar.__enter__()
        self._bar.update(done - self._shown)
        self._shown = done

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def __exit__(self, *exc: object) -> None:
        self._close()
