"""Progress of long loops (collect, train, eval, features): one helper, two ways of showing it.

On a terminal (or in a notebook) it is a tqdm bar with a total, a percentage, the rate
and an ETA; extra counters (e.g. ``frames``) are shown as rates beside it. Elsewhere
(stderr redirected to a log file, CI) a bar would write thousands of ``\\r`` updates, so
the same information comes as a few log lines instead (logger ``gradnap.progress``,
level INFO; plain lines on the stream when logging is not set up): one at the start, one every ``every_fraction`` of the total or
``every_seconds`` seconds, whichever comes first, and one at the end::

    collect: 0/400 utt
    collect: 40/400 utt (10%), 4.1 utt/s, 1520 frames/s, elapsed 0:10, ETA 1:28
    ...
    collect: 400/400 utt (100%) in 1:37, 4.1 utt/s, 1512 frames/s

>>> with progress_bar(len(items), "eval", unit="utt") as bar:
...     for batch in batches:
...         bar.update(len(batch), frames=sum(x.frames for x in batch))
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Literal, TextIO

__all__ = ["ProgressBar", "progress_bar"]

log = logging.getLogger(__name__)

Mode = Literal["auto", "bar", "lines", "off"]


def _in_notebook() -> bool:
    """Running in a Jupyter kernel (tqdm.auto draws a widget there)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _clock(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _rate(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


class ProgressBar:
    """Counts ``unit`` items towards ``total`` (see the module docstring).

    ``update(n, **counts)`` adds ``n`` items and any extra counters (shown as rates per
    second); ``note(text)`` sets a short status shown after the rates (e.g. ``"skipped
    3"``, ``"loss 1.23"``); ``close()`` (or leaving the ``with`` block) ends it.
    ``initial``: items already done (a resumed run): rates and the ETA count only the
    items of this call.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "utt",
        initial: int = 0,
        mode: Mode = "auto",
        stream: TextIO | None = None,
        every_fraction: float = 0.1,
        every_seconds: float = 30.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = self.initial = int(initial)
        self.counts: dict[str, float] = {}
        self.status = ""
        self.every_fraction = every_fraction
        self.every_seconds = every_seconds
        self.log = logger or log
        stream = sys.stderr if stream is None else stream
        self._stream = stream
        if mode == "auto":
            tty = getattr(stream, "isatty", lambda: False)()
            mode = "bar" if tty or _in_notebook() else "lines"
        self.mode = mode
        self._t0 = time.perf_counter()
        self._last_t = self._t0
        self._last_n = self.n
        self._closed = False
        self._bar: Any = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total,
                initial=self.n,
                desc=desc,
                unit=unit,
                file=stream,
                dynamic_ncols=True,
                smoothing=0.1,
            )
        elif mode == "lines":
            self._line()

    # --- counting ------------------------------------------------------------------------

    def update(self, n: int = 1, **counts: float) -> None:
        """``n`` more items done, and ``counts`` more of each extra counter."""
        self.n += n
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        if self.mode == "bar":
            extra = self._extras()
            if extra:
                self._bar.set_postfix_str(extra, refresh=False)
            self._bar.update(n)
        elif self.mode == "lines":
            now = time.perf_counter()
            total = self.total or 0
            step = (  # the last step is close()'s line
                0 < total and self.n < total and self._mark(self.n) > self._mark(self._last_n)
            )
            if step or now - self._last_t >= self.every_seconds:
                self._line()

    def note(self, text: str) -> None:
        """A short status shown after the rates (replaces the previous one)."""
        self.status = text
        if self.mode == "bar":
            self._bar.set_postfix_str(self._extras(), refresh=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.mode == "bar":
            self._bar.close()
        elif self.mode == "lines":
            self._line(final=True)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- text ----------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def _extras(self) -> str:
        """Rates of the extra counters and the status: ``"1520 frames/s, skipped 3"``."""
        seconds = self.elapsed()
        parts = [f"{_rate(v / seconds)} {k}/s" for k, v in self.counts.items() if seconds > 0]
        if self.status:
            parts.append(self.status)
        return ", ".join(parts)

    def text(self, final: bool = False) -> str:
        """The progress as one line (what the line mode logs)."""
        seconds = self.elapsed()
        done = self.n - self.initial
        head = f"{self.desc}: {self.n}"
        if self.total is not None:
            head += f"/{self.total}"
        head += f" {self.unit}"
        if self.total and (done or final):
            head += f" ({100 * self.n / self.total:.0f}%)"
        if not done and not final:
            return head
        parts = [head + (f" in {_clock(seconds)}" if final else "")]
        if seconds > 0:
            parts.append(f"{_rate(done / seconds)} {self.unit}/s")
        extra = self._extras()
        if extra:
            parts.append(extra)
        if not final:
            parts.append(f"elapsed {_clock(seconds)}")
            if self.total is not None and done > 0 and self.n < self.total:
                parts.append(f"ETA {_clock((self.total - self.n) * seconds / done)}")
        return ", ".join(parts)

    def _mark(self, n: int) -> int:
        """Which ``every_fraction`` step of the total ``n`` items reach (10%, 20%, ...)."""
        assert self.total
        return int(n / self.total / self.every_fraction + 1e-9)

    def _line(self, final: bool = False) -> None:
        if self.log.hasHandlers():
            self.log.info("%s", self.text(final))
        else:  # logging not set up (a script): the lines go where a bar would have gone
            self._stream.write(self.text(final) + "\n")
            self._stream.flush()
        self._last_t = time.perf_counter()
        self._last_n = self.n


def progress_bar(
    total: int | None,
    desc: str,
    *,
    unit: str = "utt",
    enabled: bool = True,
    initial: int = 0,
    mode: Mode = "auto",
    **kwargs: Any,
) -> ProgressBar:
    """A :class:`ProgressBar`; ``enabled=False`` gives one that shows nothing."""
    mode = mode if enabled else "off"
    return ProgressBar(total, desc, unit=unit, initial=initial, mode=mode, **kwargs)
