"""Record simulated activity and export it as Chrome trace-event JSON, which Perfetto opens.

A track is named ``"process/thread"`` (e.g. ``"gpu0/hbm"``): the part before the slash becomes a
Perfetto process, the rest a thread row. Spans on one row must not overlap in that format, so
resources that run several things at once give each its own lane (``"gpu0/hbm[1]"``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwsim.fileio import write_json_atomic


@dataclass(frozen=True)
class Span:
    track: str
    name: str
    start_s: float
    end_s: float
    category: str = ""
    args: dict[str, Any] = field(default_factory=dict)


class Tracer:
    """Collects spans and counters in simulated seconds."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.counters: list[tuple[str, str, float, dict[str, float]]] = []

    def span(self, track: str, name: str, start_s: float, end_s: float, category: str = "", **args: Any) -> None:
        if end_s < start_s:
            raise ValueError(f"span {name!r} on {track!r} ends ({end_s}) before it starts ({start_s})")
        self.spans.append(Span(track, name, start_s, end_s, category, args))

    def counter(self, track: str, name: str, time_s: float, **values: float) -> None:
        self.counters.append((track, name, time_s, values))

    def to_chrome(self) -> dict[str, Any]:
        """The trace as a Chrome trace-event document (timestamps in microseconds)."""
        pids: dict[str, int] = {}
        tids: dict[tuple[int, str], int] = {}
        events: list[dict[str, Any]] = []

        def ids(track: str) -> tuple[int, int]:
            process, _, thread = track.partition("/")
            thread = thread or process
            if process not in pids:
                pids[process] = len(pids) + 1
                events.append({"ph": "M", "name": "process_name", "pid": pids[process], "tid": 0, "args": {"name": process}})
            pid = pids[process]
            if (pid, thread) not in tids:
                tids[(pid, thread)] = len(tids) + 1
                events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tids[(pid, thread)], "args": {"name": thread}})
            return pid, tids[(pid, thread)]

        for s in self.spans:
            pid, tid = ids(s.track)
            event = {"ph": "X", "name": s.name, "cat": s.category or "activity", "pid": pid, "tid": tid,
                     "ts": s.start_s * 1e6, "dur": (s.end_s - s.start_s) * 1e6}
            if s.args:
                event["args"] = s.args
            events.append(event)
        for track, name, time_s, values in self.counters:
            pid, _ = ids(track)
            events.append({"ph": "C", "name": name, "pid": pid, "ts": time_s * 1e6, "args": values})
        return {"traceEvents": events, "displayTimeUnit": "ns", "otherData": {"producer": "hwsim"}}

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the trace atomically: a reader never sees half a file, an old file survives a failure."""
        return write_json_atomic(path, self.to_chrome())


class Lanes:
    """Hands out the lowest free row index so that concurrent spans never overlap on one row."""

    def __init__(self) -> None:
        self._busy: set[int] = set()

    def take(self) -> int:
        lane = 0
        while lane in self._busy:
            lane += 1
        self._busy.add(lane)
        return lane

    def give(self, lane: int) -> None:
        self._busy.discard(lane)
