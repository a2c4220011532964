"""A long build's progress: passages done, passages/s and the ETA, as a tqdm bar on a terminal or a line a minute in a log."""

from __future__ import annotations

import sys
import time


def duration(seconds: float) -> str:
    """3h 05m, 12m 30s, 45s."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """`update(n)` as passages are done; `note(line)` prints beside the bar; `close()` at the end.

    `start`: passages already done by an earlier run (a resumed build): counted in the bar, not in the
    rate, which is this run's."""

    def __init__(self, total: int | None, *, start: int = 0, desc: str = "indexing passages", file=None,
                 every: float = 60.0, enabled: bool = True):
        self.total, self.done, self.desc, self.every = total, start, desc, every
        self.file = file or sys.stderr
        self.enabled = enabled
        self._start, self._t0 = start, time.perf_counter()
        self._last_line = self._t0
        self._bar = None
        if enabled and self.file.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=start, desc=desc, unit=" passages", unit_scale=True,
                             smoothing=0.05, file=self.file, dynamic_ncols=True)

    @property
    def rate(self) -> float:
        """Passages a second in this run."""
        return (self.done - self._start) / max(time.perf_counter() - self._t0, 1e-9)

    def line(self) -> str:
        """'indexing passages: 1,200,000 / 8,841,823 (13.6%), 2,310 passages/s, ETA 55m 07s'."""
        of = f" / {self.total:,} ({100 * self.done / self.total:.1f}%)" if self.total else ""
        rate = self.rate
        eta = f", ETA {duration((self.total - self.done) / rate)}" if self.total and rate > 0 else ""
        return f"{self.desc}: {self.done:,}{of}, {rate:,.0f} passages/s{eta}"

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.perf_counter() - self._last_line >= self.every:
            self._last_line = time.perf_counter()
            print(self.line(), file=self.file, flush=True)

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.file)
        else:
            print(text, file=self.file, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled:
            print(self.line(), file=self.file, flush=True)
