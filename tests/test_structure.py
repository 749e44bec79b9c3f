"""The shape the code keeps (README "Layout"): floors without circles, imports at the top, short files
and functions, and modality branches only where a modality is implemented.

The figures come from ``python -m tools.structure --details``, which names every offender.
"""

from __future__ import annotations

import pytest

from tools import structure


@pytest.fixture(scope="module")
def figures() -> structure.Figures:
    return structure.measure(file_lines=500)


def test_no_import_circles(figures):
    assert figures.circles == []


def test_imports_only_go_down_the_floors(figures):
    assert figures.upward == []


def test_the_projects_own_modules_are_imported_at_the_top_of_files(figures):
    assert figures.inside_functions == []


def test_no_file_over_500_lines_no_function_over_100_no_ui_builder_over_80(figures):
    assert figures.long_files == []
    assert figures.long_functions == []
    assert figures.long_builders == []


def test_modality_branches_only_in_the_encoders_and_the_two_tabs(figures):
    assert figures.modality_branches == []


def test_every_module_stands_on_a_floor():
    modules = structure.read_modules()
    assert [name for name in modules if structure.floor_of(name) < 0] == []


def test_the_checker_sees_an_upward_import_and_a_circle(tmp_path, monkeypatch):
    """The rules above can fail: a low module importing a high one is named, and so is a loop."""
    package = tmp_path / "fewshot_demo"
    (package / "config").mkdir(parents=True)
    (package / "ui").mkdir()
    for folder in (package, package / "config", package / "ui"):
        (folder / "__init__.py").write_text("")
    (package / "config" / "low.py").write_text("def f():\n    from fewshot_demo.ui import high\n")
    (package / "ui" / "high.py").write_text("from fewshot_demo.config import low\n")
    (tmp_path / "app.py").write_text("")
    monkeypatch.setattr(structure, "ROOT", tmp_path)
    found = structure.measure()
    assert found.upward == ["fewshot_demo/config/low.py:2 -> fewshot_demo.ui.high"]
    assert found.inside_functions == ["fewshot_demo/config/low.py:2 -> fewshot_demo.ui.high"]
    assert found.circles == [["fewshot_demo.config.low", "fewshot_demo.ui.high"]]
