"""Measure the app's speed against the model's own: each figure next to its floor, timed in the same run.

    python -m tools.latency [--repeats 10]

1. App start to ready: launches ``python app.py`` in a subprocess and times until the page answers
   and the models are warm (the app warms them up in the background at start).
2. Click to first prediction: the files of a 5-way 5-shot example set are uploaded once, in one
   request, as a browser does when they are dropped; then one Classify call through the app's HTTP
   API (support images not embedded before) is timed until its result arrives.
3. A new query once the support set is embedded: a second call with one image the app has not seen
   (the API round trip), the image tab's handler in this process (read the file, embed, predict,
   the cards), and the core path (embed + predict).

The floor of each figure is the backbone's forward passes over the same images, timed in this
process on the app's number of threads (one pass per image, each image preprocessed beforehand):
the first click's just before and after it (the app waits meanwhile), a new query's right before
each one (the ratio is the median of these pairs, which share the machine's load). The load average
before and after says how busy the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import torch

from fewshot_demo.config.limits import Limits
from fewshot_demo.config.settings import settings
from fewshot_demo.core.image_task import (
    build_support,
    classify_images,
    fit_image_classifier,
)
from fewshot_demo.data.images import load_image
from fewshot_demo.encoders.image import load_backbone
from fewshot_demo.ui import image_tab

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "images" / "mixed_5way"
#: Targets: the first prediction within this many times its floor, a new query within that many.
FIRST_CLICK_TARGET = 1.5
NEW_QUERY_TARGET = 1.2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def _classes() -> tuple[list[str], list[list[str]], list[str]]:
    support = sorted(p for p in (EXAMPLE / "support").iterdir() if p.is_dir())
    names = [d.name for d in support]
    files = [sorted(str(f) for f in d.iterdir()) for d in support]
    queries = sorted(str(q) for q in (EXAMPLE / "query").glob("*/*"))
    return names, files, queries


class AppApi:
    """The app's HTTP API as a browser uses it: files uploaded once, then calls that name them.

    Args:
        url: the app's root URL.
        session_hash: one browser session (its States persist across calls).
    """

    def __init__(self, url: str, session_hash: str = "latency") -> None:
        self.url = url.rstrip("/") + "/gradio_api"
        self.session_hash = session_hash
        self.http = httpx.Client(timeout=300)

    def upload(self, paths: list[str]) -> dict[str, dict]:
        """Upload files in one request; return {local path: the FileData that names it on the server}."""
        opened = [("files", (Path(p).name, open(p, "rb"))) for p in paths]
        try:
            response = self.http.post(f"{self.url}/upload", files=opened)
        finally:
            for _, (_, handle) in opened:
                handle.close()
        response.raise_for_status()
        return {p: {"path": server, "orig_name": Path(p).name, "meta": {"_type": "gradio.FileData"}}
                for p, server in zip(paths, response.json())}

    def call(self, api_name: str, data: list[Any]) -> list[Any]:
        """Call an endpoint and wait for its result (the SSE stream's ``complete`` event)."""
        response = self.http.post(f"{self.url}/call/{api_name}", json={"data": data, "session_hash": self.session_hash})
        response.raise_for_status()
        event_id = response.json()["event_id"]
        event = None
        with self.http.stream("GET", f"{self.url}/call/{api_name}/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line[len("event: "):]
                elif line.startswith("data: ") and event in ("complete", "error"):
                    payload = json.loads(line[len("data: "):])
                    if event == "error":
                        raise RuntimeError(f"{api_name} failed: {payload}")
                    return payload
        raise RuntimeError(f"{api_name} ended without a result")


def timed(call: Callable[[], Any]) -> float:
    """Seconds that ``call()`` took."""
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@dataclass
class AppTimings:
    """What the launched app took, each next to the floor measured around it in this process."""

    page_ready: float = 0.0
    warm_ready: float = 0.0
    upload: float = 0.0
    first_click: float = 0.0
    api_clicks: list[float] = field(default_factory=list)
    first_floors: list[float] = field(default_factory=list)  # the support set's forward passes
    query_floors: list[float] = field(default_factory=list)  # one forward pass per query


def _through_the_app(names: list[str], files: list[list[str]], queries: list[str],
                     repeats: int) -> tuple[AppTimings, Any, list[Any]]:
    """Launch the app, time its start, an upload, the first click and new queries by its raw API.

    Returns:
        (the timings, this process's backbone, the queries' preprocessed tensors).
    """
    timings = AppTimings()
    support_paths = [f for fs in files for f in fs]
    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1", GRADIO_ANALYTICS_ENABLED="False")
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for(url, timeout=180)
        timings.page_ready = time.perf_counter() - start
        api = AppApi(url)
        api.call("warmup", [])  # returns once the models are loaded
        timings.warm_ready = time.perf_counter() - start

        # The floor, in this process, with the app's thread setting, while the app waits: timed
        # just before and just after the app's clicks, so both see the same machine.
        torch.set_num_threads(settings().torch_threads)
        backbone = load_backbone()
        support_tensors = [backbone.preprocess(load_image(f))[None] for f in support_paths]
        query_tensors = [backbone.preprocess(load_image(q))[None] for q in queries]
        backbone._forward(support_tensors[0])  # the app is warm too

        def support_floor() -> float:
            return timed(lambda: [backbone._forward(tensor) for tensor in support_tensors])

        def query_floor() -> list[float]:
            return [timed(lambda t=t: backbone._forward(t)) for t in query_tensors]

        timings.first_floors, timings.query_floors = [support_floor()], query_floor()
        began = time.perf_counter()
        uploaded = api.upload(support_paths + queries)
        timings.upload = time.perf_counter() - began
        padded_names = names + [""] * (Limits.ROWS - len(names))
        padded_files = [[uploaded[f] for f in fs] for fs in files] + [None] * (Limits.ROWS - len(names))

        def click(query: str) -> list[Any]:
            # The raw API takes every input, the session State too (the server fills it in), then
            # the fine-tune steps and AdaBN's share last.
            return api.call("image_classify", ["efficientnet_lite0", "protonet", 5, True, 0.5, [uploaded[query]], None,
                                               None, *padded_names, *padded_files, 5, 1.0])

        timings.first_click = timed(lambda: click(queries[0]))
        timings.first_floors.append(support_floor())
        new_queries = queries[1:][: max(1, repeats)]  # never seen by the app: no cached features
        timings.api_clicks = [timed(lambda: click(query)) for query in new_queries]
        timings.query_floors += query_floor()
    finally:
        process.terminate()
        process.wait(timeout=30)
    return timings, backbone, query_tensors


def _in_process(backbone: Any, names: list[str], files: list[list[str]], queries: list[str], repeats: int,
                query_tensors: list[Any]) -> dict[str, list[float]]:
    """The in-process paths of a new query, the app gone: each timed next to its own floor (one
    forward pass of the same image), so that both see the same load on a shared machine."""
    support = build_support(list(zip(names, files)))
    classifier = fit_image_classifier(support, backbone, "protonet")
    query_images = [load_image(q) for q in queries]
    rows = image_tab.load_example(EXAMPLE.name)
    class_values = rows[1 : 1 + 2 * Limits.ROWS]
    session, *_ = image_tab.classify("efficientnet_lite0", "protonet", 5, True, 0.5, [queries[0]], None, None,
                                     *class_values, progress=lambda *a, **k: None)
    found: dict[str, list[float]] = {"core": [], "handler": [], "floors": [], "core_ratios": [], "handler_ratios": []}
    for i in range(max(1, repeats)):
        index = i % len(queries)
        floor = timed(lambda: backbone._forward(query_tensors[index]))
        backbone._cache.clear()  # a new query is never in the cache
        found["core"].append(timed(lambda: classify_images(classifier, backbone, [query_images[index]])))
        found["core_ratios"].append(found["core"][-1] / floor)
        found["floors"].append(floor)
        floor = timed(lambda: backbone._forward(query_tensors[index]))
        backbone._cache.clear()
        found["handler"].append(timed(lambda: image_tab.classify(
            "efficientnet_lite0", "protonet", 5, True, 0.5, [queries[index]], None, session, *class_values,
            progress=lambda *a, **k: None)))
        found["handler_ratios"].append(found["handler"][-1] / floor)
        found["floors"].append(floor)
    return found


def _report(app: AppTimings, local: dict[str, list[float]], n_support: int, n_queries: int, loads: tuple[str, str]) -> None:
    first_floor = _median(app.first_floors)
    query_floor_s = _median(app.query_floors + local["floors"])

    def against(seconds: float, floor: float, target: float | None = None) -> str:
        verdict = f", target <= {target:.1f}x" if target else ""
        return f"floor {1000 * floor:6.1f} ms, {seconds / floor:4.2f}x{verdict}"

    print(f"load average (1, 5, 15 min): {loads[0]} before, {loads[1]} after; "
          f"{os.cpu_count()} CPUs, {settings().torch_threads} torch thread(s)")
    print(f"app start to page served:                  {app.page_ready:7.1f} s")
    print(f"app start to models warm:                  {app.warm_ready:7.1f} s   (image backbone and text encoder)")
    print(f"upload of {n_support + n_queries} files, once, in one request:  {1000 * app.upload:7.0f} ms  "
          "(a browser uploads when files are dropped, before any click)")
    print(f"5-way 5-shot click to first prediction:    {1000 * app.first_click:7.0f} ms  "
          f"{against(app.first_click, first_floor, FIRST_CLICK_TARGET)} (floor: {n_support} forward passes, one image "
          f"each, {', '.join(f'{1000 * f:.0f}' for f in app.first_floors)} ms before and after)")
    print(f"new query, API round trip:                 {1000 * _median(app.api_clicks):7.1f} ms  "
          f"{against(_median(app.api_clicks), query_floor_s)} (median of {len(app.api_clicks)}; floor: one forward pass)")
    paired = _median(local["floors"])
    for name, times, ratios in (("handler (read, embed, cards):", local["handler"], local["handler_ratios"]),
                                ("core (embed + predict):", local["core"], local["core_ratios"])):
        print(f"new query, {name:<32}{1000 * _median(times):7.1f} ms  floor {1000 * paired:6.1f} ms, "
              f"{_median(ratios):4.2f}x, target <= {NEW_QUERY_TARGET:.1f}x (median of {len(ratios)} ratios, each to a "
              "forward pass of the same image just before)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="new queries timed (at most 9 through the app)")
    args = parser.parse_args(argv)
    load_before = _load()
    names, files, queries = _classes()
    app, backbone, query_tensors = _through_the_app(names, files, queries, args.repeats)
    local = _in_process(backbone, names, files, queries, args.repeats, query_tensors)
    _report(app, local, sum(len(fs) for fs in files), len(queries), (load_before, _load()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
