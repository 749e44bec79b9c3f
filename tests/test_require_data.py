"""FEWSHOT_REQUIRE_DATA=1 (set by scripts/test.sh, which installs the data) turns every skip into a failure."""

from __future__ import annotations

import pytest

TESTS = """
import pytest

def test_passes():
    pass

def test_skips():
    pytest.skip("the photos are not installed")

@pytest.fixture
def photos():
    pytest.skip("no photos for the fixture")

def test_skips_in_setup(photos):
    pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_xfails():
    assert False
"""


def _run(pytester: pytest.Pytester) -> pytest.RunResult:
    import conftest  # this directory's conftest: its hooks are what the inner run is checked against

    # Third-party plugins off: loading them would take most of the time of these small runs.
    quiet = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")
    return pytester.runpytest_inprocess("-rA", *quiet, plugins=[conftest])


@pytest.mark.parametrize("value", [None, "0"])
def test_skips_stay_skips_without_the_variable(pytester, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("FEWSHOT_REQUIRE_DATA", raising=False)
    else:
        monkeypatch.setenv("FEWSHOT_REQUIRE_DATA", value)
    pytester.makepyfile(TESTS)
    _run(pytester).assert_outcomes(passed=1, skipped=2, xfailed=1)


def test_a_skip_fails_with_its_reason_when_data_is_required(pytester, monkeypatch):
    monkeypatch.setenv("FEWSHOT_REQUIRE_DATA", "1")
    pytester.makepyfile(TESTS)
    result = _run(pytester)
    result.assert_outcomes(passed=1, failed=1, errors=1, xfailed=1)  # (a failure in setup is an error)
    result.stdout.fnmatch_lines(["ERROR *::test_skips_in_setup", "FAILED *::test_skips"])
    output = result.stdout.str()
    assert "the photos are not installed" in output and "no photos for the fixture" in output
    assert "FEWSHOT_REQUIRE_DATA=1 makes a skip a failure" in output


def test_a_module_that_skips_itself_is_an_error_when_data_is_required(pytester, monkeypatch):
    pytester.makepyfile('import pytest\npytest.skip("no corpus", allow_module_level=True)\n\ndef test_x():\n    pass\n')
    monkeypatch.delenv("FEWSHOT_REQUIRE_DATA", raising=False)
    _run(pytester).assert_outcomes(skipped=1)
    monkeypatch.setenv("FEWSHOT_REQUIRE_DATA", "1")
    result = _run(pytester)
    result.assert_outcomes(errors=1)
    assert "no corpus" in result.stdout.str()
