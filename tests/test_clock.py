"""Time-based behaviour with an injected clock: a handle's expiry, refreshed by each use; the sweep of
old temporary files; which tab's classes the comparison takes (the one classified last); the
milliseconds per episode the bench and the comparison report.

No test here sleeps: the clock is a number the test sets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.core import runner
from fewshot_demo.data.episodes import Episode
from fewshot_demo.methods.base import FewShotLearner
from fewshot_demo.serving.handles import HandleStore
from fewshot_demo.ui.support import modality as session_module
from fewshot_demo.ui.support.modality import SupportSession, latest_session
from fewshot_demo.ui.temp_files import TempFiles

TTL = 100.0


@dataclass
class Held:
    """Stands for a fitted classifier: the store counts the tensors it holds."""

    features: Tensor


class Clock:
    """A clock the test sets: ``clock.now = 5.0``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store(clock: Clock, max_handles: int = 10, max_bytes: float = 1e6) -> HandleStore:
    return HandleStore(max_handles=max_handles, max_bytes=max_bytes, ttl_s=TTL, clock=clock)


def alive(handles: HandleStore, handle: str) -> bool:
    try:
        handles.get(handle)
    except UserInputError:
        return False
    return True


# ------------------------------------------------------------------------------------ handles
def test_using_a_handle_restarts_its_time_to_live():
    clock = Clock()
    handles = store(clock)
    used, unused = handles.put(Held(torch.zeros(1))), handles.put(Held(torch.zeros(1)))
    clock.now = 0.9 * TTL
    assert handles.get(used).classifier is not None  # used at 0.9 ttl: it now lasts until 1.9 ttl
    clock.now = 1.05 * TTL
    assert len(handles) == 1  # the unused one is gone after ttl
    assert not alive(handles, unused)
    clock.now = 1.8 * TTL
    assert alive(handles, used)  # 0.9 ttl after its last use (and this use restarts it again)
    clock.now = 2.81 * TTL
    assert not alive(handles, used)  # more than ttl after the use at 1.8 ttl


def test_a_handle_lasts_exactly_its_time_to_live_after_it_was_made():
    clock = Clock(1000.0)
    handles = store(clock)
    handle = handles.put(Held(torch.zeros(1)))
    assert handles._entries[handle].last_used == 1000.0
    clock.now = 1000.0 + TTL
    assert len(handles) == 1  # at exactly ttl it is still there
    clock.now = 1000.0 + TTL + 1e-3
    assert len(handles) == 0


def test_a_used_handle_is_the_last_to_be_pushed_out():
    clock = Clock()
    handles = store(clock, max_handles=2)
    first, second = handles.put(Held(torch.zeros(1))), handles.put(Held(torch.zeros(1)))
    clock.now = 1.0
    handles.get(first)  # now second is the least recently used
    third = handles.put(Held(torch.zeros(1)))
    assert alive(handles, first) and alive(handles, third) and not alive(handles, second)


def test_the_memory_bound_pushes_out_the_least_recently_used_first():
    clock = Clock()
    handles = store(clock, max_bytes=1000)
    first, second = handles.put(Held(torch.zeros(100))), handles.put(Held(torch.zeros(100)))  # 400 bytes each
    handles.get(first)
    third = handles.put(Held(torch.zeros(100)))  # 1200 bytes: the least recently used (second) goes
    assert handles.nbytes == 800
    assert alive(handles, first) and alive(handles, third) and not alive(handles, second)


# ------------------------------------------------------------------------------------ temporary files
def test_the_sweep_removes_only_the_apps_files_older_than_the_limit(tmp_path):
    now = 1_700_000_000.0
    files = TempFiles(root=str(tmp_path), max_age_s=60)

    def made(name: str, age: float, folder: bool = True):
        path = tmp_path / name
        path.mkdir() if folder else path.write_bytes(b"x")
        os.utime(path, (now - age, now - age))
        return path

    old_folder, old_file = made("fewshot-old", 61), made("fewshot-old.onnx", 600, folder=False)
    boundary, young = made("fewshot-boundary", 60), made("fewshot-young", 5)
    other = made("someone-elses", 10_000)
    assert files.sweep(now=now) == 2
    assert not old_folder.exists() and not old_file.exists()
    assert boundary.exists() and young.exists() and other.exists()
    # Later, the young ones age out too; the files of others never do.
    assert files.sweep(now=now + 66) == 2
    assert not boundary.exists() and not young.exists() and other.exists()


def test_the_sweep_reads_the_limit_from_the_settings(tmp_path):
    files = TempFiles(root=str(tmp_path))
    assert files.max_age_s == limits().temp_max_age_s
    folder = tmp_path / "fewshot-x"
    folder.mkdir()
    os.utime(folder, (1000.0, 1000.0))
    assert files.sweep(now=1000.0 + files.max_age_s) == 0 and folder.exists()
    assert files.sweep(now=1000.0 + files.max_age_s + 1) == 1 and not folder.exists()


def test_the_sweep_on_its_own_clock(tmp_path):
    """The background sweep reads the injected clock (``time.time`` in the app)."""
    clock = Clock(5000.0)
    files = TempFiles(root=str(tmp_path), max_age_s=60, clock=clock)
    folder = tmp_path / "fewshot-y"
    folder.mkdir()
    os.utime(folder, (5000.0, 5000.0))
    clock.now = 5060.0
    assert files.sweep() == 0 and folder.exists()
    clock.now = 5060.5
    assert files.sweep() == 1 and not folder.exists()


# ------------------------------------------------------------------------------------ the tab classified last
def test_the_comparison_takes_the_tab_classified_last_and_a_classification_keeps_the_fit(monkeypatch):
    clock = Clock(10.0)
    monkeypatch.setattr(session_module, "time", SimpleNamespace(monotonic=clock))
    image = SupportSession(modality=None, classifier=None, captions=(), data="image data", fitted_at=1.0)
    text = SupportSession(modality=None, classifier=None, captions=(), data="text data", fitted_at=2.0)
    loaded = SupportSession(modality=None, classifier=None, captions=(), data=None, fitted_at=3.0)
    assert latest_session(image, text, loaded, None) is None  # nothing classified yet
    image = image.with_queries(["q"], torch.zeros(1, 2), [0])
    clock.now = 11.0
    text = text.with_queries(["q"], torch.zeros(1, 2), [1])
    clock.now = 12.0
    loaded = loaded.with_queries(["q"], torch.zeros(1, 2), [0])  # classified last, but has no data to compare
    assert (image.classified_at, text.classified_at) == (10.0, 11.0)
    assert latest_session(image, text, loaded) is text
    clock.now = 13.0
    image = image.with_queries(["q2"], torch.zeros(1, 2), [1])
    assert latest_session(image, text, loaded) is image
    assert (image.fitted_at, text.fitted_at) == (1.0, 2.0)  # classifying does not make the fit's panels stale


# ------------------------------------------------------------------------------------ ms per episode
class Timed(FewShotLearner):
    """Moves the fake clock on by ``fit_s`` in fit and ``predict_s`` in predict_proba; predicts class 0."""

    def __init__(self, clock: Clock, fit_s: float, predict_s: float) -> None:
        super().__init__()
        self.clock, self.fit_s, self.predict_s = clock, fit_s, predict_s

    def fit(self, support: Tensor, support_labels: Tensor) -> "Timed":
        self.clock.now += self.fit_s
        self.n_way = int(support_labels.max()) + 1
        return self

    def predict_proba(self, query: Tensor) -> Tensor:
        self.clock.now += self.predict_s
        return torch.eye(self.n_way)[torch.zeros(len(query), dtype=torch.long)]


def test_ms_per_episode_is_the_mean_of_fit_plus_predict_in_milliseconds(monkeypatch):
    clock = Clock(50.0)
    monkeypatch.setattr(runner, "time", SimpleNamespace(perf_counter=clock))
    items = torch.zeros(6, 2)
    episode = Episode((0, 1), torch.tensor([0, 3]), torch.tensor([0, 1]), torch.tensor([1, 2, 4, 5]),
                      torch.tensor([0, 0, 1, 1]))
    costs = iter([(0.010, 0.004), (0.030, 0.006)])

    def learner() -> Timed:
        clock.now += 7.0  # building the learner is not timed
        return Timed(clock, *next(costs))

    run = runner.run_episodes(learner, items, [episode, episode])
    assert [o.fit_seconds for o in run.outcomes] == pytest.approx([0.010, 0.030])
    assert [o.seconds for o in run.outcomes] == pytest.approx([0.014, 0.036])
    summary = run.summary()
    assert summary.ms_per_episode == pytest.approx(25.0)  # (14 + 36) / 2
    assert summary.accuracy == 0.5 and summary.ci95 == 0.0 and summary.n_shot == 1
    assert summary.to_dict()["ms_per_episode"] == 25.0
