"""Drive a running app with simulated users and report latency, errors and the server's memory.

    python app.py &                                   # or any running copy of the app on this machine
    python -m tools.loadtest --users 20 --minutes 5 --url http://127.0.0.1:7860/

Each user is its own gradio_client session that repeats a cycle: fit a 5-way 5-shot support set of
the bundled example photos (``/fit_images``), classify ten new query images one at a time with
the handle (``/predict``; each query is a bundled photo with a few random pixels changed, so no
feature cache helps), forget the handle, and every third cycle run a small comparison
(``/compare_run``: 2 methods, 10 episodes, on a zip of the example set). Users start a little apart
and wait about a second between two requests (``--think``; 0 turns it into a stress test).

It prints requests, errors, p50/p95/max latency per endpoint, the server's resident memory over
time (read from /proc for the process listening on the URL's port, or ``--pid``), the load
average, and, measured in the same run on the idle server before the users start, the core's time
for one new query (embed + classify, in this process) next to one ``/predict`` call with a handle
over plain HTTP (uploading the image, or inline as a data URL) and through gradio_client (see
``IdleTimings``).

It only talks to this machine (127.0.0.1, localhost, ::1), for at most ``MAX_USERS`` users and
``MAX_MINUTES`` minutes. The exit status is 1 when any request failed.
"""

from __future__ import annotations

import argparse
import base64
import functools
import os
import random
import ssl
import statistics
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

import torch
from gradio_client import Client, handle_file
from PIL import Image

from fewshot_demo.config.settings import settings
from fewshot_demo.core.image_task import build_support, classify_images, fit_image_classifier
from fewshot_demo.data.images import load_image
from fewshot_demo.encoders.image import load_backbone
from tools.latency import AppApi, timed
from tools.load_records import Recorder, percentile
from tools.server_probe import Sampler, server_pid

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "images" / "mixed_5way"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_USERS = 50
MAX_MINUTES = 30.0
#: Classifications with one handle before the user fits again.
QUERIES_PER_FIT = 10
#: Every this many cycles a user runs a small comparison.
COMPARE_EVERY = 3


# ------------------------------------------------------------------------------------------ clients
@functools.lru_cache(maxsize=1)
def shared_tls() -> Any:
    """One default (verifying) TLS context for every gradio_client call of this process.

    gradio_client passes its ``ssl_verify`` to each httpx request, and httpx builds a new TLS context
    from it every time, loading the certificate bundle again, even for plain-HTTP URLs: measured
    here, that was the largest share of the load generator's CPU (20 users took more than a core).
    A ready context is used as it is.
    """
    return ssl.create_default_context()


def connect(url: str, reuse_tls: bool = True) -> Any:
    """A gradio_client session on ``url`` (with ``shared_tls`` unless ``reuse_tls`` is False)."""
    return Client(url, verbose=False, **({"ssl_verify": shared_tls()} if reuse_tls else {}))


# ------------------------------------------------------------------------------------------ the users
@dataclass(frozen=True)
class Workload:
    """The files every user sends: the support set, the query photos, the comparison zip."""

    support: list[Path]
    labels: list[str]
    queries: list[Path]
    archive: Path
    folder: Path


def workload(folder: Path) -> Workload:
    """The bundled 5-way 5-shot example set, its query photos, and a zip of it for comparisons."""
    support = sorted(p for p in (EXAMPLE / "support").glob("*/*") if p.is_file())
    queries = sorted(p for p in (EXAMPLE / "query").glob("*/*") if p.is_file())
    archive = folder / "mixed_5way.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in [*support, *queries]:
            zipped.write(path, f"mixed/{path.parent.name}/{path.parent.parent.name}_{path.name}")
    return Workload(support, [p.parent.name for p in support], queries, archive, folder)


@functools.lru_cache(maxsize=64)
def _photo(source: Path) -> Any:
    """A bundled query photo, decoded once and shrunk to at most 320 px (what a phone app would send)."""
    image = Image.open(source).convert("RGB")
    image.thumbnail((320, 320))
    return image


def new_query(source: Path, folder: Path, rng: random.Random) -> Path:
    """A copy of a photo with a few random pixels changed: same class, never seen by any cache."""
    image = _photo(source).copy()
    pixels = image.load()
    for _ in range(8):
        x, y = rng.randrange(image.width), rng.randrange(image.height)
        pixels[x, y] = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    path = folder / f"query-{threading.get_ident()}-{rng.getrandbits(48):012x}.png"
    image.save(path, compress_level=1)  # fast to write: the load generator shares the CPU with the server
    return path


def user(number: int, url: str, work: Workload, deadline: float, recorder: Recorder, think_s: float = 0.0) -> None:
    """One simulated user: fit, ten classifications by handle, forget; a comparison every third cycle.

    Between two requests the user waits ``think_s`` seconds on average (0.5 to 1.5 times it, drawn
    at random, so users do not move in step); 0 sends the next request as soon as an answer comes.
    """
    rng = random.Random(number)

    def think() -> None:
        if think_s > 0:
            time.sleep(think_s * rng.uniform(0.5, 1.5))

    client = recorder.call("connect", lambda: connect(url))
    if client is None:
        return
    support = [handle_file(str(p)) for p in work.support]
    cycle = 0
    while time.monotonic() < deadline:
        fitted = recorder.call("/fit_images", lambda: client.predict(support, work.labels, "protonet",
                                                                    api_name="/fit_images"))
        if fitted is not None:
            for _ in range(QUERIES_PER_FIT):
                think()
                if time.monotonic() >= deadline:
                    break
                query = new_query(rng.choice(work.queries), work.folder, rng)
                answer = recorder.call("/predict", lambda: client.predict(fitted["handle"], [handle_file(str(query))],
                                                                          api_name="/predict"))
                query.unlink(missing_ok=True)
                if answer is not None and len(answer.get("predictions", [])) != 1:
                    recorder.records["/predict"].errors.append(f"unexpected answer {str(answer)[:200]}")
            recorder.call("/forget", lambda: client.predict(fitted["handle"], api_name="/forget"))
        if (cycle + number) % COMPARE_EVERY == 0 and time.monotonic() < deadline:
            think()
            recorder.call("/compare_run", lambda: _compare(client, work.archive))
        think()
        cycle += 1


def _compare(client: Any, archive: Path) -> Any:
    outputs = client.predict("upload", handle_file(str(archive)), 5, [1], 10, ["protonet", "linear"],
                             api_name="/compare_run")
    if "Done" not in str(outputs[0]):
        raise RuntimeError(f"the comparison did not finish: {str(outputs[0])[:200]}")
    return outputs


# ------------------------------------------------------------------------------------------ idle timings
@dataclass(frozen=True)
class IdleTimings:
    """Medians for one new query on an idle server, in milliseconds.

    Attributes:
        core: embed + classify in this process, as the app does it (``classify_images``).
        http: the same through the API with plain HTTP on one kept-alive connection, as
            ``latency.AppApi`` calls it: upload the image, POST ``/gradio_api/call/predict``, read
            the result from its event stream.
        http_inline: the same with the image inline in the call as a data URL (no upload request).
        client: the same through ``gradio_client`` (``client.predict(handle, [handle_file(...)])``),
            sessions made with ``connect`` (one TLS context for all calls, see ``shared_tls``).
        client_defaults: the same through a gradio_client session with its defaults.
        http_empty, client_empty: the transport's own floor, over plain HTTP and through
            gradio_client (``connect``): ``/warmup`` once the models are loaded, which returns at
            once (nothing uploaded, nothing computed).
    """

    core: float
    http: float
    client: float
    client_defaults: float = float("nan")
    http_empty: float = float("nan")
    client_empty: float = float("nan")
    http_inline: float = float("nan")


def warm_path(url: str, work: Workload) -> None:
    """One fit, one classification and one forget, untimed: whatever that path loads on first use (the
    method's checkpoint, a backbone another caller pushed out) is loaded before the clock starts."""
    client = connect(url)
    handle = client.predict([handle_file(str(p)) for p in work.support], work.labels, "protonet",
                            api_name="/fit_images")["handle"]
    client.predict(handle, [handle_file(str(work.queries[0]))], api_name="/predict")
    client.predict(handle, api_name="/forget")


def idle_timings(url: str, work: Workload, repeats: int = 15) -> IdleTimings:
    """Time one new query on the idle server three ways, and the transport alone (see ``IdleTimings``)."""
    rng = random.Random(12345)
    client = connect(url)
    handle = client.predict([handle_file(str(p)) for p in work.support], work.labels, api_name="/fit_images")["handle"]

    def through(send: Callable[[Path], Any]) -> list[float]:
        """Seconds for ``send`` of each of ``repeats`` new queries."""
        timings = []
        for _ in range(repeats):
            query = new_query(rng.choice(work.queries), work.folder, rng)
            timings.append(timed(lambda: send(query)))
        return timings

    def by_client(session: Any) -> Callable[[Path], Any]:
        return lambda query: session.predict(handle, [handle_file(str(query))], api_name="/predict")

    through_client, through_defaults = through(by_client(client)), through(by_client(connect(url, reuse_tls=False)))
    client_empty = [timed(lambda: client.predict(api_name="/warmup")) for _ in range(repeats)]

    api = AppApi(url, session_hash="loadtest-idle")

    def over_http(query: Path) -> None:
        uploaded = api.upload([str(query)])[str(query)]
        if "predictions" not in api.call("predict", [handle, [uploaded]])[0]:
            raise RuntimeError("/predict answered without predictions")

    def inline(query: Path) -> None:
        data_url = "data:image/png;base64," + base64.b64encode(query.read_bytes()).decode()
        if "predictions" not in api.call("predict", [handle, [data_url]])[0]:
            raise RuntimeError("/predict answered without predictions")

    through_http, through_inline = through(over_http), through(inline)
    http_empty = [timed(lambda: api.call("warmup", [])) for _ in range(repeats)]
    client.predict(handle, api_name="/forget")

    torch.set_num_threads(settings().torch_threads)  # as the app runs
    backbone = load_backbone()
    classes: dict[str, list[Path]] = {}
    for path, label in zip(work.support, work.labels):
        classes.setdefault(label, []).append(path)
    classifier = fit_image_classifier(build_support(list(classes.items())), backbone, "protonet")
    core = through(lambda query: classify_images(classifier, backbone, [load_image(query)]))
    median_ms = lambda values: 1000 * statistics.median(values)  # noqa: E731
    return IdleTimings(median_ms(core), median_ms(through_http), median_ms(through_client), median_ms(through_defaults),
                       median_ms(http_empty), median_ms(client_empty), median_ms(through_inline))


# ------------------------------------------------------------------------------------------ report
def report(recorder: Recorder, sampler: Sampler, warm_s: float, users: int, seconds: float, url: str,
           pid: int | None, idle: IdleTimings | None, think_s: float = 0.0) -> str:
    lines = [f"load test: {users} users for {seconds / 60:.1f} min against {url} (server pid {pid or 'unknown'}, "
             f"{os.cpu_count()} cores), {think_s:g} s between a user's requests on average", "",
             f"{'endpoint':<14}{'requests':>9}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"]
    for endpoint in ("/fit_images", "/predict", "/forget", "/compare_run", "connect"):
        record = recorder.records.get(endpoint)
        if record is None:
            continue
        ms = [1000 * s for s in record.seconds]
        lines.append(f"{endpoint:<14}{record.requests:>9}{len(record.errors):>8}{percentile(ms, 50):>9.0f}"
                     f"{percentile(ms, 95):>9.0f}{max(ms, default=float('nan')):>9.0f}")
    if idle is not None:
        lines += ["", f"one new query on the idle server (medians): core {idle.core:.1f} ms (embed + classify, in this "
                      f"process); /predict with a handle {idle.http:.1f} ms over plain HTTP ({idle.http / idle.core:.1f}x; "
                      f"{idle.http_inline:.1f} ms with the image inline as a data URL, {idle.http_inline / idle.core:.1f}x), "
                      f"{idle.client:.1f} ms through gradio_client ({idle.client / idle.core:.1f}x; "
                      f"{idle.client_defaults:.1f} ms with its default TLS setting, "
                      f"{idle.client_defaults / idle.core:.1f}x); "
                      f"the transport alone (an empty call): {idle.http_empty:.1f} ms over plain HTTP, "
                      f"{idle.client_empty:.1f} ms through gradio_client"]
    memory = [(t, m) for t, m, _ in sampler.samples if m is not None]
    if memory:
        after = [m for t, m in memory if t >= warm_s] or [memory[-1][1]]
        warm, end, peak = after[0], memory[-1][1], max(after)
        lines += ["", f"server memory (RSS): {memory[0][1]:.0f} MB at the start, {warm:.0f} MB after warm-up "
                      f"({warm_s:.0f} s), {end:.0f} MB at the end ({100 * (end - warm) / warm:+.1f}%), "
                      f"peak after warm-up {peak:.0f} MB ({100 * (peak - warm) / warm:+.1f}%)"]
        # The samples swing with the forward passes in flight; means over a minute show a trend.
        first = [m for t, m in memory if warm_s <= t < warm_s + 60]
        last = [m for t, m in memory if seconds - 60 <= t <= seconds]
        if first and last and seconds - 60 >= warm_s + 60:
            before, after_mean = statistics.mean(first), statistics.mean(last)
            lines.append(f"  trend: mean {before:.0f} MB over the minute after warm-up, {after_mean:.0f} MB over "
                         f"the run's last minute ({100 * (after_mean - before) / before:+.1f}%)")
        minutes = [[m for t, m in memory if warm_s + 60 * k <= t < warm_s + 60 * (k + 1)]
                   for k in range(int((seconds - warm_s) // 60))]
        means = [statistics.mean(minute) for minute in minutes if minute]
        if len(means) > 1:
            highest = max(means[1:])
            lines.append(f"  each minute after warm-up (means): {', '.join(f'{m:.0f}' for m in means)} MB; the highest "
                         f"after the first {100 * (highest - means[0]) / means[0]:+.1f}% over it")
        step = max(1, len(memory) // 12)
        lines.append("  over time: " + ", ".join(f"{t:.0f} s {m:.0f} MB" for t, m in memory[::step]))
    loads = [load for _, _, load in sampler.samples]
    lines += ["", f"load average (1 min): mean {statistics.mean(loads):.1f}, max {max(loads):.1f} on {os.cpu_count()} cores"]
    (server_start, own_start), (server_end, own_end) = sampler.cpu_start, sampler.cpu_end
    if None not in (server_start, server_end, own_start, own_end) and pid != os.getpid():
        lines.append(f"CPU used during the run: server {(server_end - server_start) / seconds:.2f} cores, "
                     f"this load generator {(own_end - own_start) / seconds:.2f} cores (of {os.cpu_count()})")
    errors = [f"{endpoint}: {error}" for endpoint, record in recorder.records.items() for error in record.errors]
    lines += ["", f"errors: {len(errors)}" + ("" if not errors else " (first 5 below)"), *errors[:5]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:7860/", help="the running app (this machine only)")
    parser.add_argument("--users", type=int, default=20, help=f"simulated users, 1 to {MAX_USERS}")
    parser.add_argument("--minutes", type=float, default=5.0, help=f"how long the users run, at most {MAX_MINUTES:g}")
    parser.add_argument("--think", type=float, default=1.0,
                        help="seconds a user waits between two requests, on average (default 1; 0: none)")
    parser.add_argument("--warm-up", type=float, default=None,
                        help="seconds after which memory growth is measured (default: a fifth of the run, at most 60)")
    parser.add_argument("--pid", type=int, default=None, help="the server's pid (default: found from the URL's port)")
    parser.add_argument("--no-idle-timing", action="store_true", help="skip the idle core vs API timing")
    args = parser.parse_args(argv)
    url = args.url if args.url.endswith("/") else args.url + "/"
    host = urlparse(url).hostname or ""
    if host not in LOOPBACK:
        parser.error(f"the load test only drives an app on this machine (127.0.0.1, localhost); got {host!r}")
    if not 1 <= args.users <= MAX_USERS:
        parser.error(f"--users must be between 1 and {MAX_USERS}")
    if not 0 < args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be above 0 and at most {MAX_MINUTES:g}")
    if not 0 <= args.think <= 60:
        parser.error("--think must be between 0 and 60 seconds")
    seconds = 60 * args.minutes
    warm_s = args.warm_up if args.warm_up is not None else min(60.0, seconds / 5)
    pid = args.pid or server_pid(urlparse(url).port or 80)

    connect(url).predict(api_name="/warmup")  # the models are loaded before anything is timed
    with tempfile.TemporaryDirectory(prefix="fewshot-loadtest-") as folder:
        work = workload(Path(folder))
        warm_path(url, work)
        idle = None if args.no_idle_timing else idle_timings(url, work)
        recorder = Recorder()
        sampler = Sampler(pid, every_s=min(5.0, max(1.0, seconds / 30))).start()
        deadline = time.monotonic() + seconds
        threads = []
        for number in range(args.users):
            thread = threading.Thread(target=user, args=(number, url, work, deadline, recorder, args.think),
                                      daemon=True)
            thread.start()
            threads.append(thread)
            time.sleep(min(0.5, seconds / (10 * args.users)))  # users arrive a little apart
        for thread in threads:
            thread.join(timeout=seconds + 300)  # a request under way is allowed to finish
        sampler.stop()
    print(report(recorder, sampler, warm_s, args.users, seconds, url, pid, idle, args.think))
    return 1 if any(record.errors for record in recorder.records.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
