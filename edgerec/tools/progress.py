"""Progress on stderr for long jobs (`edgerec build`, `add`, and the export stage).

On a terminal, one click progress bar per stage. Anywhere else (a log file, a
pipe, CI) a bar's redraws would land as fragments ("checking " with no end),
so each stage prints plain whole lines instead: one per tenth of the work and
one when it is done.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import click

_STEPS = 10  # plain lines per stage, besides the last


class StageProgress:
    """Progress of a long job's stages on ``file`` (stderr); called as progress(stage, done, total)."""

    def __init__(self, file: TextIO | None = None) -> None:
        self._file = file if file is not None else sys.stderr
        self._bar: Any = None
        self._stage = ""
        self._shown = 0
        isatty = getattr(self._file, "isatty", None)
        self._terminal = bool(isatty and isatty())

    def __enter__(self) -> "StageProgress":
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self._stage:
            self._close()
            self._stage, self._shown = stage, 0
            if self._terminal:
                # show_pos: "12288/1000000" tells how big the job is, not only how far along.
                self._bar = click.progressbar(length=total, label=f"{stage:<9}", file=self._file, show_pos=True)
                self._bar.__enter__()
        if self._bar is not None:
            self._bar.update(done - self._shown)
        elif total > 0 and (done >= total > self._shown or
                            done < total and done * _STEPS // total > self._shown * _STEPS // total):
            click.echo(f"{stage} {done:,}/{total:,}" + (" done" if done >= total else ""), file=self._file)
        self._shown = done

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def __exit__(self, *exc: object) -> None:
        self._close()
