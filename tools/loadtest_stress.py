"""Saturate ``/predict`` with a handle and set its throughput against the compute floor of the same run.

    python app.py &                                   # or any running copy of the app on this machine
    python -m tools.loadtest_stress --url http://127.0.0.1:7860/ --seconds 60 --concurrency 8

One classifier per caller is fitted (``/fit_images``, the bundled 5-way 5-shot photos; the server
classifies with one handle one query at a time); then ``--concurrency`` callers send ``/predict``
with their handle back to back, each query a new image (a bundled photo with
random pixels changed, inline as a JPEG data URL, so no feature cache helps and nothing is uploaded),
over plain HTTP on kept-alive connections, for ``--seconds``. It prints requests per second, p50/p95,
errors, the server's resident memory after warm-up and at the end, the CPU the server and this
process used, and the floor: this machine's cores divided by one forward pass of the backbone on one
image, timed in this process (on the app's thread setting) just before and just after the run, the
median of both. A server with no overhead would reach it only if passes on all cores at once were
as quick as one alone; they are not (they share caches and memory), so it also prints the passes per
second that every core running passes at once makes, measured right after the run, and the
throughput against that: the server's own overhead, with the machine's limit taken out.

``--profile`` samples the server with py-spy during the run (``pip install py-spy``; it needs
permission to read the server's memory, so run both as the same user) and prints its top functions.
The normal mix of many users is ``python -m tools.loadtest`` (see docs/load-test.md).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

import torch

from fewshot_demo.config.settings import settings
from fewshot_demo.data.images import load_image
from fewshot_demo.encoders.image import load_backbone
from tools.latency import AppApi
from tools.load_records import Recorder, percentile
from tools.loadtest import LOOPBACK, _photo, workload
from tools.server_probe import Sampler, server_pid

MAX_SECONDS = 1800
MAX_CONCURRENCY = 64
#: Session ids are this run's own: the server binds a session to the client that opened it.
RUN = os.urandom(6).hex()


@dataclass(frozen=True)
class Floor:
    """One forward pass of the backbone on one image, and what the machine's cores make of it."""

    pass_ms: float
    cores: int

    @property
    def per_second(self) -> float:
        return self.cores * 1000 / self.pass_ms


def _preprocessed(paths: Sequence[Path]) -> tuple[Any, list[torch.Tensor]]:
    """The default backbone, on the app's number of threads, and each photo preprocessed for it (1, 3, h, w)."""
    torch.set_num_threads(settings().torch_threads)
    backbone = load_backbone()
    return backbone, [backbone.preprocess(load_image(path))[None] for path in paths]


def forward_ms(paths: Sequence[Path], repeats: int = 15) -> float:
    """Median milliseconds of one forward pass of the default backbone on one preprocessed image,
    on the app's number of threads, in this process."""
    backbone, tensors = _preprocessed(paths)
    backbone._forward(tensors[0])  # warm
    timings = []
    for i in range(repeats):
        began = time.perf_counter()
        backbone._forward(tensors[i % len(tensors)])
        timings.append(1000 * (time.perf_counter() - began))
    return statistics.median(timings)


def concurrent_passes_per_second(paths: Sequence[Path], cores: int, seconds: float = 3.0) -> float:
    """Forward passes per second with ``cores`` threads passing one image each at once, in this process:
    what the cores make together when every one of them runs passes (each may be slower than a pass
    alone: the cores share caches and memory)."""
    backbone, tensors = _preprocessed(paths)
    counts = [0] * cores
    deadline = time.monotonic() + seconds

    def passes(number: int) -> None:
        torch.set_num_threads(settings().torch_threads)
        while time.monotonic() < deadline:
            backbone._forward(tensors[(number + counts[number]) % len(tensors)])
            counts[number] += 1

    began = time.perf_counter()
    threads = [threading.Thread(target=passes, args=(n,)) for n in range(cores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def new_jpeg(source: Path, rng: random.Random) -> str:
    """A data URL of a bundled photo with a few random pixels changed (JPEG: quick to encode)."""
    image = _photo(source).copy()
    pixels = image.load()
    for _ in range(8):
        pixels[rng.randrange(image.width), rng.randrange(image.height)] = (rng.randrange(256), 0, rng.randrange(256))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def caller(number: int, url: str, handle: str, queries: Sequence[Path], deadline: float, recorder: Recorder) -> None:
    """Send ``/predict`` with ``handle`` and a new image until ``deadline``, one request at a time."""
    rng = random.Random(f"{RUN}-{number}")  # new images every run: a second run on the same server finds none cached
    api = AppApi(url, session_hash=f"stress-{RUN}-{number}")
    while time.monotonic() < deadline:
        query = new_jpeg(rng.choice(queries), rng)
        answer = recorder.call("/predict", lambda: api.call("predict", [handle, [query]])[0])
        if answer is not None and len(answer.get("predictions", [])) != 1:
            recorder.records["/predict"].errors.append(f"unexpected answer {str(answer)[:200]}")


def profile(pid: int, seconds: float, folder: Path) -> subprocess.Popen | None:
    """Start py-spy on the server for ``seconds`` (raw per-function counts), or None without py-spy."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        print("--profile: py-spy is not installed (pip install py-spy); running without it")
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--format", "raw",
                             "--rate", "50", "--output", str(folder / "profile.txt"), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_functions(path: Path, count: int = 15) -> list[str]:
    """The functions most often on the stack (inclusive) and at its top (self) in a py-spy raw profile."""
    if not path.exists():
        return ["(py-spy wrote no profile: may this user read the server's memory?)"]
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        frames, n = stack.split(";"), int(samples)
        total += n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n
    ranked = sorted(own.items(), key=lambda pair: -pair[1])[:count]
    return [f"{100 * n / max(total, 1):5.1f}% self, {100 * inclusive[frame] / max(total, 1):5.1f}% incl  {frame[:150]}"
            for frame, n in ranked]


def report(recorder: Recorder, sampler: Sampler, seconds: float, warm_s: float, floor: Floor, concurrency: int,
           pid: int | None) -> str:
    record = recorder.records["/predict"]
    ms = [1000 * s for s in record.seconds]
    rate = len(record.seconds) / seconds
    slowest = max(ms, default=float("nan"))
    lines = [f"stress: /predict with a handle, {concurrency} callers back to back for {seconds:.0f} s "
             f"(server pid {pid or 'unknown'}, {os.cpu_count()} cores)",
             f"  {record.requests} requests, {len(record.errors)} errors, {rate:.1f} answered per second; "
             f"p50 {percentile(ms, 50):.0f} ms, p95 {percentile(ms, 95):.0f} ms, max {slowest:.0f} ms",
             f"  floor: {floor.cores} cores / {floor.pass_ms:.1f} ms per forward pass = {floor.per_second:.1f} per "
             f"second; throughput / floor = {rate / floor.per_second:.2f}"]
    memory = [(t, m) for t, m, _ in sampler.samples if m is not None]
    if memory:
        after = [m for t, m in memory if t >= warm_s] or [memory[-1][1]]
        warm, end, peak = after[0], memory[-1][1], max(after)
        lines.append(f"  server memory (RSS): {warm:.0f} MB after warm-up ({warm_s:.0f} s), {end:.0f} MB at the end "
                     f"({100 * (end - warm) / warm:+.1f}%), peak {peak:.0f} MB ({100 * (peak - warm) / warm:+.1f}%)")
    (server_start, own_start), (server_end, own_end) = sampler.cpu_start, sampler.cpu_end
    if None not in (server_start, server_end, own_start, own_end) and pid != os.getpid():
        per_answer = 1000 * (server_end - server_start) / max(len(record.seconds), 1)
        # On a shared machine the server gets less than every core; its CPU per answer against one
        # forward pass says how near the floor it would be with the cores to itself.
        lines.append(f"  CPU: server {(server_end - server_start) / seconds:.2f} cores, this process "
                     f"{(own_end - own_start) / seconds:.2f} cores; server CPU per answer {per_answer:.1f} ms, "
                     f"one forward pass / that = {floor.pass_ms / per_answer:.2f}")
    loads = [load for _, _, load in sampler.samples]
    lines.append(f"  load average (1 min): mean {statistics.mean(loads):.1f}, max {max(loads):.1f}")
    lines += [f"  error: {error}" for error in record.errors[:5]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.loadtest_stress", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:7860/", help="the running app (this machine only)")
    parser.add_argument("--seconds", type=float, default=60.0, help=f"how long to saturate, at most {MAX_SECONDS}")
    parser.add_argument("--concurrency", type=int, default=8, help=f"callers at once, 1 to {MAX_CONCURRENCY}")
    parser.add_argument("--pid", type=int, default=None, help="the server's pid (default: found from the URL's port)")
    parser.add_argument("--profile", action="store_true", help="sample the server with py-spy during the run")
    args = parser.parse_args(argv)
    url = args.url if args.url.endswith("/") else args.url + "/"
    if (urlparse(url).hostname or "") not in LOOPBACK:
        parser.error("the stress test only drives an app on this machine (127.0.0.1, localhost)")
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be above 0 and at most {MAX_SECONDS}")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    pid = args.pid or server_pid(urlparse(url).port or 80)
    with tempfile.TemporaryDirectory(prefix="fewshot-stress-") as folder:
        work = workload(Path(folder))
        api = AppApi(url, session_hash=f"stress-{RUN}-fit")
        api.call("warmup", [])
        uploaded = api.upload([str(p) for p in work.support])
        support = [uploaded[str(p)] for p in work.support]
        # A handle per caller, as users have: the server classifies with one handle one query at a time.
        handles = [api.call("fit_images", [support, work.labels, "protonet", None, None])[0]["handle"]
                   for _ in range(args.concurrency)]
        before = forward_ms(work.queries)
        recorder, sampler = Recorder(), Sampler(pid, every_s=min(5.0, max(0.5, args.seconds / 30))).start()
        spy = profile(pid, args.seconds, Path(folder)) if args.profile and pid else None
        deadline = time.monotonic() + args.seconds
        threads = [threading.Thread(target=caller, args=(n, url, handle, work.queries, deadline, recorder), daemon=True)
                   for n, handle in enumerate(handles)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=args.seconds + 120)
        sampler.stop()
        floor = Floor(statistics.median([before, forward_ms(work.queries)]), os.cpu_count() or 1)
        together = concurrent_passes_per_second(work.queries, floor.cores)
        rate = len(recorder.records["/predict"].seconds) / args.seconds
        print(report(recorder, sampler, args.seconds, min(60.0, args.seconds / 5), floor, args.concurrency, pid))
        print(f"  every core passing at once: {together:.1f} passes per second ({together / floor.per_second:.2f}x the "
              f"floor); throughput / that = {rate / together:.2f}")
        if spy is not None:
            spy.wait(timeout=60)
            ranked = top_functions(Path(folder) / "profile.txt")
            print("\nserver profile (py-spy, by own samples):\n" + "\n".join(ranked))
        for handle in handles:
            api.call("forget", [handle])
    return 1 if recorder.records["/predict"].errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
