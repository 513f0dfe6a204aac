"""A one-line progress display on stderr: redrawn in place on a terminal, an occasional plain
line otherwise (CI logs), never on stdout (which carries results)."""

from __future__ import annotations

import time
from typing import TextIO


class Progress:
    def __init__(
        self, stream: TextIO, *, every_s: float = 0.5, plain_every_s: float = 10.0, tag: str = ""
    ) -> None:
        self.stream = stream
        self.tag = tag
        self.tty = stream.isatty()
        self.every_s = every_s if self.tty else plain_every_s
        self._next = 0.0
        self._width = 0
        self._last = ""

    def update(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next:
            self._last = text
            return
        self._next = now + self.every_s
        self._last = ""
        if self.tty:
            pad = max(self._width - len(text), 0)
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def line(self, text: str) -> None:
        """A line that stays (an event), above the progress line."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(self.tag + text + "\n")
        self.stream.flush()
        self._next = 0.0

    def tagged(self, tag: str) -> Progress:
        """The same stream, every line starting with ``tag`` (scenarios run side by side)."""
        return Progress(self.stream, every_s=self.every_s, plain_every_s=self.every_s, tag=tag)

    def done(self) -> None:
        if self._last:
            self.update(self._last, force=True)
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
