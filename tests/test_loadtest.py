"""The load command, short: a few users against the test app, no errors, every endpoint exercised."""

from __future__ import annotations

import re

import pytest

from tools import loadtest, loadtest_stress, server_probe


def test_a_short_load_run_has_no_errors(app_url, capsys):
    status = loadtest.main(["--url", app_url, "--users", "3", "--minutes", "0.3", "--think", "0.2", "--no-idle-timing"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    rows = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in re.finditer(r"^(/\w+)\s+(\d+)\s+(\d+)", printed, re.M)}
    counts = {endpoint: rows.get(endpoint, (0, 0))[0] for endpoint in ("/fit_images", "/predict", "/compare_run")}
    assert counts["/fit_images"] >= 3 and counts["/predict"] >= 10 and counts["/compare_run"] >= 1, printed
    assert all(errors == 0 for _, errors in rows.values()) and "errors: 0" in printed
    assert re.search(r"server memory \(RSS\): \d+ MB", printed)


def test_a_short_stress_run_reports_its_throughput_against_the_floor(app_url, capsys):
    status = loadtest_stress.main(["--url", app_url, "--seconds", "4", "--concurrency", "2"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    answered = re.search(r"(\d+) requests, 0 errors, ([\d.]+) answered per second; p50 \d+ ms, p95 \d+ ms", printed)
    floor = re.search(r"floor: (\d+) cores / ([\d.]+) ms per forward pass = ([\d.]+) per second; "
                      r"throughput / floor = ([\d.]+)", printed)
    assert answered and floor and int(answered.group(1)) >= 4, printed
    cores, pass_ms, per_second, ratio = int(floor.group(1)), *map(float, floor.groups()[1:])
    assert per_second == pytest.approx(cores * 1000 / pass_ms, rel=0.01)
    assert ratio == pytest.approx(float(answered.group(2)) / per_second, abs=0.011) and 0 < ratio < 2
    assert re.search(r"server memory \(RSS\): \d+ MB after warm-up", printed)
    together = re.search(r"every core passing at once: ([\d.]+) passes per second \(([\d.]+)x the floor\); "
                         r"throughput / that = ([\d.]+)", printed)
    assert together and float(together.group(1)) > 0, printed
    assert float(together.group(2)) == pytest.approx(float(together.group(1)) / per_second, abs=0.011)
    assert float(together.group(3)) == pytest.approx(float(answered.group(2)) / float(together.group(1)), abs=0.011)


@pytest.mark.parametrize("argv, message", [
    (["--url", "http://example.com:7860/"], "only drives an app on this machine"),
    (["--concurrency", "500"], "--concurrency must be between 1 and 64"),
    (["--seconds", "0"], "--seconds must be above 0"),
])
def test_the_stress_command_stays_on_this_machine_and_within_bounds(argv, message, capsys):
    with pytest.raises(SystemExit):
        loadtest_stress.main(argv)
    assert message in capsys.readouterr().err


def test_the_profile_summary_ranks_functions_by_their_own_samples(tmp_path):
    (tmp_path / "profile.txt").write_text("main (a.py:1);forward (b.py:2) 30\nmain (a.py:1);json (c.py:3) 10\n")
    top = loadtest_stress.top_functions(tmp_path / "profile.txt")
    assert top[0].startswith(" 75.0% self,  75.0% incl  forward") and "25.0% self" in top[1]


@pytest.mark.parametrize("argv, message", [
    (["--url", "http://example.com:7860/"], "only drives an app on this machine"),
    (["--users", "500"], "--users must be between 1 and 50"),
    (["--minutes", "90"], "--minutes must be above 0 and at most 30"),
])
def test_the_load_command_stays_on_this_machine_and_within_bounds(argv, message, capsys):
    with pytest.raises(SystemExit):
        loadtest.main(argv)
    assert message in capsys.readouterr().err


def test_percentiles_and_the_server_pid_lookup():
    assert loadtest.percentile([1, 2, 3, 4], 50) == 2.5 and loadtest.percentile([5], 95) == 5
    import os
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert server_probe.server_pid(server.getsockname()[1]) == os.getpid()


def test_the_report_reads_memory_growth_from_the_samples():
    from types import SimpleNamespace

    # A sample every 5 s for 300 s: 1000 MB until warm-up at 60 s, then 10 MB more per minute.
    samples = [(t, 1000 + max(0, t - 60) / 6, 1.0) for t in range(0, 301, 5)]
    sampler = SimpleNamespace(samples=samples, cpu_start=(None, None), cpu_end=(None, None))
    printed = loadtest.report(loadtest.Recorder(), sampler, 60.0, 2, 300.0, "http://127.0.0.1:7860/", None, None)
    assert "1000 MB after warm-up (60 s), 1040 MB at the end (+4.0%), peak after warm-up 1040 MB (+4.0%)" in printed
    # Minute means: 60-115 s average 1004.6 MB, 240-300 s average 1035 MB.
    assert "trend: mean 1005 MB over the minute after warm-up, 1035 MB over the run's last minute (+3.0%)" in printed
    assert "each minute after warm-up (means): 1005, 1015, 1025, 1035 MB; the highest after the first +3.0% over it" \
        in printed
    # A hump in the second minute after warm-up, back down by the end: the highest minute is the hump.
    samples = [(t, 1000 + (50 if 120 <= t < 180 else 0), 1.0) for t in range(0, 301, 5)]
    sampler = SimpleNamespace(samples=samples, cpu_start=(None, None), cpu_end=(None, None))
    printed = loadtest.report(loadtest.Recorder(), sampler, 60.0, 2, 300.0, "http://127.0.0.1:7860/", None, None)
    assert "(means): 1000, 1050, 1000, 1000 MB; the highest after the first +5.0% over it" in printed
