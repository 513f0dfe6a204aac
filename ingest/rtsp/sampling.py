"""Which frames of a stream health has to decode: pure, no I/O, time passed in.

Health looks at about one picture a second; a viewer needs every frame. Decoding is most of what
a camera costs, and a frame can only be decoded after every frame back to its keyframe, so:

- every packet is counted (the fps is the stream's real rate, whatever is decoded);
- a keyframe is decoded when a picture is due, or when the next keyframe would come too late
  for it; otherwise it is skipped;
- when keyframes are further apart than the sample interval, the decoder is fed from the keyframe
  up to the sample we want inside the group, and no further;
- nothing is decoded before the first keyframe (nothing could be), unless the stream marks none
  at all within ``no_keyframe_s``: then every frame is decoded, as a viewer would.

At 15 fps with a keyframe a second (the simulator; many cameras send one every 1-2 s) that is
one frame in 15.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SamplePlan:
    interval_s: float  # a picture at least this often...
    started: float  # when the stream was opened
    slack: float = 0.25  # ...give or take this share of it, so a keyframe can be the picture
    no_keyframe_s: float = 4.0
    key_at: float | None = None  # the last keyframe
    gop_s: float | None = None  # the time between the last two keyframes
    last_sample: float | None = None
    feeding: bool = False  # is the decoder being fed this group of pictures?

    def packet(self, now: float, key: bool) -> tuple[bool, bool]:
        """(decode this packet?, analyse the picture it gives?)."""
        if key:
            if self.key_at is not None:
                self.gop_s = now - self.key_at
            self.key_at = now
            if not self._due(now) and self._next_key_in_time():
                self.feeding = False
                return False, False
            self.feeding = True
            return True, True
        if not self.feeding:
            if self.key_at is not None or now - self.started < self.no_keyframe_s:
                return False, False
            self.feeding = True  # the stream marks no keyframes: decode everything
        return True, self._due(now)

    def sampled(self, now: float) -> None:
        """A picture was analysed: keep decoding only if the next one is due before the next
        keyframe (or when no keyframe has been seen)."""
        self.last_sample = now
        self.feeding = self.key_at is None or not self._next_key_in_time()

    def _due(self, now: float) -> bool:
        return self.last_sample is None or now - self.last_sample >= self.interval_s

    def _next_key_in_time(self) -> bool:
        """Will the next keyframe (expected one group after the last) be in time for the next
        picture we want?"""
        if self.key_at is None or self.gop_s is None or self.last_sample is None:
            return False
        wanted_by = self.last_sample + self.interval_s * (1 + self.slack)
        return self.key_at + self.gop_s <= wanted_by
