"""malloc tuning: forward passes stop faulting their pages in, a server's memory stays flat, the settings can say no."""

from __future__ import annotations

import platform
import resource
import sys

import pytest
import torch
from PIL import Image

from fewshot_demo.config.settings import Settings, settings
from fewshot_demo.encoders.image import load_backbone
from fewshot_demo.runtime import allocator

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.fixture
def fresh_allocator():
    """The allocator module re-reads the settings (each function runs once per process otherwise)."""
    for cached in (settings, allocator._libc, allocator.keep_freed_memory):
        cached.cache_clear()
    yield
    for cached in (settings, allocator._libc, allocator.keep_freed_memory):
        cached.cache_clear()


def test_the_settings_turn_tuning_off():
    assert Settings.from_environment({}).tune_malloc
    assert not Settings.from_environment({"FEWSHOT_TUNE_MALLOC": "0"}).tune_malloc
    for glibc_variable in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        assert not Settings.from_environment({glibc_variable: "2"}).tune_malloc  # whoever set it chose


def test_nothing_is_changed_when_tuning_is_off(monkeypatch, fresh_allocator):
    monkeypatch.setenv("FEWSHOT_TUNE_MALLOC", "0")
    assert not allocator.keep_freed_memory()
    assert not allocator.keep_memory_flat()
    assert not allocator.hand_back_freed_memory()


def _page_faults_per_pass(passes: int = 5) -> float:
    backbone = load_backbone()
    batch = torch.stack([backbone.preprocess(Image.new("RGB", (320, 240), (90, 140, 30)))])
    backbone._forward(batch)  # the first pass may fault its pages in
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(passes):
        backbone._forward(batch)
    return (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / passes


@pytest.mark.skipif(not GLIBC, reason="the tuning is for glibc's malloc")
def test_a_served_forward_pass_reuses_its_memory(fresh_allocator):
    # A server's settings once set a 128 KB mmap threshold for flat memory: every pass then faulted
    # 18,000 pages in again (45 ms of a 70 ms pass in the kernel). With the tuning, a few hundred.
    assert allocator.keep_memory_flat(every_s=3600)
    assert allocator.keep_freed_memory()  # already set by keep_memory_flat: runs once
    assert _page_faults_per_pass() < 2000
    allocator.hand_back_freed_memory()  # after a trim, one pass faults its pages in again; the next ones do not
    _page_faults_per_pass()
    assert _page_faults_per_pass() < 2000
