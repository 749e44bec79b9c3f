"""A comparison's results as files: CSV (one row per method and K-shot) and JSON (everything, with
the reading and the versions the numbers depend on).

    csv_path, json_path = write_exports(folder, data, config, update)
"""

from __future__ import annotations

import csv
import io
import json
import platform
from pathlib import Path
from typing import Any, Sequence

import torch

from fewshot_demo.bench.comparison import ComparisonConfig, ComparisonData
from fewshot_demo.bench.reading import reading
from fewshot_demo.bench.results import ComparisonUpdate, MethodResult
from fewshot_demo.config.version import __version__

#: The CSV's columns, in order.
CSV_COLUMNS = ("dataset", "method", "family", "encoder", "n_way", "n_shot", "n_query", "episodes",
               "accuracy", "ci95", "ms_per_episode", "peak_mb")


def results_csv(dataset: str, n_way: int, results: Sequence[MethodResult]) -> str:
    """The results as CSV text, one row per method and K-shot."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow({"dataset": dataset, "n_way": n_way, **result.to_dict(), "peak_mb": (
            "" if result.summary.peak_mb is None else round(result.summary.peak_mb, 2))})
    return buffer.getvalue()


def results_json(data: ComparisonData, config: ComparisonConfig, update: ComparisonUpdate) -> dict[str, Any]:
    """The results as a JSON-able dict, in the bench command's shape plus the comparison's fields."""
    per_class = {
        f"{r.method}/{r.n_shot}": dict(zip(data.class_names, [None if a is None else round(a, 4) for a in r.per_class_accuracy()]))
        for r in update.results
    }
    return {
        "dataset": data.name,
        "modality": data.data.modality,
        "encoder": data.encoder,
        **({"meta_encoder": data.meta_encoder} if data.meta_encoder else {}),
        "device": str(data.device),
        "n_way": config.n_way,
        "n_shots": list(config.n_shots),
        "n_query": update.results[0].n_query if update.results else config.n_query,
        "episodes": config.n_episodes,
        "seed": config.seed,
        "items": len(data.data.items),
        "classes": data.class_names,
        "status": update.kind,
        "notes": update.notes,
        "skipped": update.skipped,
        "failed": update.failed,
        "not_run": [n.to_dict() for n in update.not_run],
        "versions": versions(),
        "results": [r.to_dict() for r in update.results],
        "per_class_accuracy": per_class,
        "reading": reading(update.summaries(), update.results),
    }


def versions() -> dict[str, str]:
    """Versions that the numbers depend on."""
    found = {"fewshot_demo": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for package in ("timm", "transformers"):
        try:  # deferred: optional heavy packages, imported only for their version
            found[package] = __import__(package).__version__
        except ImportError:
            pass
    return found


def write_exports(folder: Any, data: ComparisonData, config: ComparisonConfig, update: ComparisonUpdate) -> tuple[str, str]:
    """Write ``comparison.csv`` and ``comparison.json`` into ``folder``; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = folder / "comparison.csv", folder / "comparison.json"
    csv_path.write_text(results_csv(data.name, config.n_way, update.results))
    json_path.write_text(json.dumps(results_json(data, config, update), indent=2) + "\n")
    return str(csv_path), str(json_path)
