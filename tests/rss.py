"""Peak resident memory of a running process, sampled from /proc (Linux).

`with RssSampler(pid) as rss: ...` samples `VmRSS` of `pid` every `interval` seconds in a
thread until the block ends; `rss.peak` is the largest sample (bytes), `rss.peak_tree`
the largest sum over the process and its descendants (e.g. the git processes a node
runs). A sample is also taken at the start and at the end, so a short window still has
some.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType

MB = 1000 * 1000


def rss_bytes(pid: int) -> int:
    """VmRSS of the process in bytes (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """The process's children, their children, and so on."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class RssSampler:
    def __init__(self, pid: int, interval: float = 0.02, tree: bool = False) -> None:
        self.pid = pid
        self.interval = interval
        self.tree = tree
        self.peak = 0
        self.peak_tree = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        own = rss_bytes(self.pid)
        self.peak = max(self.peak, own)
        if self.tree:
            self.peak_tree = max(self.peak_tree, own + sum(rss_bytes(p) for p in descendants(self.pid)))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
