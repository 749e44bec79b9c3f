"""Shared fixtures (a launched app for gradio_client and browser tests, the bundled backbone), and
FEWSHOT_REQUIRE_DATA: set to 1, it turns every skip into a failure (see ``pytest_runtest_makereport``)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
torch.manual_seed(0)

pytest_plugins = ["pytester"]  # tests of the hooks below run pytest on small test files

#: Set to 1 where the data sets are installed (CI: scripts/test.sh installs them, then sets it).
REQUIRE_DATA_ENV_VAR = "FEWSHOT_REQUIRE_DATA"


def _data_required() -> bool:
    return os.environ.get(REQUIRE_DATA_ENV_VAR) == "1"


def _skip_as_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"{reason}\n{REQUIRE_DATA_ENV_VAR}=1 makes a skip a failure: where the data is installed, a test "
        f"that skips checks nothing. Install what it asks for, or unset {REQUIRE_DATA_ENV_VAR} locally."
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """Under FEWSHOT_REQUIRE_DATA=1 a skip in setup, call or teardown fails; an xfail stays an xfail."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and _data_required():
        _skip_as_failure(report)
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport:
    """Under FEWSHOT_REQUIRE_DATA=1 a module that skips itself (``allow_module_level``) is an error."""
    report = yield
    if report.skipped and _data_required():
        _skip_as_failure(report)
    return report


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def fresh_settings():
    """Settings are read from the environment once; a test that sets a variable calls
    ``settings.cache_clear()`` after ``monkeypatch.setenv``, and the next test reads the environment again."""
    from fewshot_demo.config.settings import settings

    yield
    settings.cache_clear()


@pytest.fixture
def single_thread():
    """Tiny tensors: one intra-op thread is faster, and much faster when other processes share the CPU."""
    from fewshot_demo.runtime.device import one_thread

    with one_thread(True):
        yield


@pytest.fixture(scope="session")
def backbone():
    from fewshot_demo.encoders.image import load_backbone

    return load_backbone("efficientnet_lite0", "cpu")


@pytest.fixture(scope="session")
def app_url():
    """The real app, launched once for the session on a free local port."""
    import app as app_module

    port = _free_port()
    app_module.demo.queue().launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
        allowed_paths=[str(ROOT / "examples")],
    )
    yield f"http://127.0.0.1:{port}/"
    app_module.demo.close()


@pytest.fixture(scope="session")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    # A fake camera (a moving test pattern) that needs no permission prompt: the webcam tests use it.
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]
#: Browser tests save what a person would see here (git-ignored), one PNG per checked screen.
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """The folder browser tests save their screenshots in."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by playwright (which downloads nothing)."""
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(executable).exists():
        pytest.fail(f"{executable} not found: install Debian's chromium (scripts/test.sh does)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()
