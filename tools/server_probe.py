"""The server seen from outside its process, through /proc: which process listens on a port, its CPU
seconds and resident memory, sampled in a thread while a load runs."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def server_pid(port: int) -> int | None:
    """The pid of the process listening on ``port`` on this machine (from /proc), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:  # a busy server opens and closes descriptors while they are listed
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return int(entry.name)
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used (from /proc/<pid>/stat), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (VmRSS), or None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Sampler:
    """Samples the server's RSS and the load average every ``every_s`` seconds in a thread."""

    def __init__(self, pid: int | None, every_s: float = 5.0) -> None:
        self.pid = pid
        self.every_s = every_s
        self.samples: list[tuple[float, float | None, float]] = []  # (seconds since start, RSS MB, load 1 min)
        self._stop = threading.Event()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="loadtest-sampler", daemon=True)

    def start(self) -> "Sampler":
        self.cpu_start = (cpu_seconds(self.pid) if self.pid else None, cpu_seconds(os.getpid()))
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.cpu_end = (cpu_seconds(self.pid) if self.pid else None, cpu_seconds(os.getpid()))

    def _sample(self) -> None:
        self.samples.append((time.perf_counter() - self._started, rss_mb(self.pid) if self.pid else None,
                             os.getloadavg()[0]))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every_s)
