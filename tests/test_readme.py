"""Every snippet README.md prints is run here, and what it prints is checked twice: against the
``# -> `` lines written in the snippet (so a snippet whose output changes fails), and against the
app's own answer for the same input (the launched app through its public endpoints, and the bench
command for ``fsd.evaluate``). The README's method table is checked against the registry.

    python tests/test_readme.py     # prints the method table the README should hold
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from gradio_client import handle_file

import fewshot_demo as fsd
from fewshot_demo.encoders.registry import default_encoder, default_method
from fewshot_demo.methods import all_methods, methods_for

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: The address the README's web snippets name; the tests put the launched app's in its place.
README_URL = "http://127.0.0.1:7860"
#: ``# -> text``: one line the snippet prints, in order.
EXPECTED = re.compile(r"#\s->\s(.*)$")
TABLE_START = ("<!-- methods table: generated from fewshot_demo.methods.all_methods(); "
               "`python tests/test_readme.py` prints it -->")
TABLE_END = "<!-- /methods table -->"
QUICK_START = ["bash scripts/app.sh", "bash scripts/test.sh"]
#: What gradio_client prints on connecting; the README leaves it out of the snippet's output.
CLIENT_GREETING = "Loaded as API:"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


# ------------------------------------------------------------------------------------------ reading
def _blocks(language: str) -> list[str]:
    """The fenced code blocks of one language, in README order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def _one_block(language: str, marker: str) -> str:
    found = [block for block in _blocks(language) if marker in block]
    assert len(found) == 1, f"expected one ```{language} block with {marker!r} in README.md, found {len(found)}"
    return found[0]


def _expected(code: str) -> list[str]:
    """The ``# -> `` lines of a snippet: what it prints, one line each."""
    return [match.group(1).rstrip() for line in code.splitlines() if (match := EXPECTED.search(line))]


def _calls(code: str, name: str) -> list[tuple[list[Any], dict[str, Any]]]:
    """The literal arguments of every call to ``<something>.name(...)`` in a snippet."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name:
            args = [ast.literal_eval(arg) for arg in node.args if _is_literal(arg)]
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if _is_literal(kw.value)}
            found.append(((node.lineno, node.col_offset), args, kwargs))
    return [(args, kwargs) for _, args, kwargs in sorted(found, key=lambda call: call[0])]


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


def _run(code: str, where: Path, filename: str) -> tuple[list[str], dict[str, Any]]:
    """Execute a snippet in folder ``where``; return the lines it printed and its variables."""
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    printed = io.StringIO()
    before = Path.cwd()
    os.chdir(where)
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, filename, "exec"), namespace)  # noqa: S102 (the README's own snippet)
    finally:
        os.chdir(before)
    lines = [line.rstrip() for line in printed.getvalue().splitlines()]
    return [line for line in lines if not line.startswith(CLIENT_GREETING)], namespace


def methods_table() -> str:
    """The README's method table, from the registry: key, name in the app, family, where it runs, what it is."""
    runs_on = (("image", default_encoder("image"), "images"), ("image", "pixels28", "28x28 pixels"),
               ("text", default_encoder("text"), "text"))
    available = {name: {spec.key for spec in methods_for(modality, encoder)} for modality, encoder, name in runs_on}
    rows = ["| method | in the app | family | runs on | what it is |", "|---|---|---|---|---|"]
    for spec in all_methods():
        family = spec.family + (", transductive" if spec.transductive else "")
        where = ", ".join(name for _, _, name in runs_on if spec.key in available[name])
        rows.append(f"| `{spec.key}` | {spec.label} | {family} | {where} | {spec.description} |")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder where the snippets' relative paths (examples/...) resolve and their files land."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def python_snippet(workdir) -> tuple[str, list[str], dict[str, Any]]:
    code = _one_block("python", "import fewshot_demo as fsd")
    printed, namespace = _run(code, workdir, "README.md (Python)")
    return code, printed, namespace


def _classifier(namespace: dict[str, Any], modality: str):
    """The snippet's fitted classifier of one modality (the one that still knows its support items)."""
    found = [value for value in namespace.values()
             if isinstance(value, fsd.Classifier) and value.modality == modality and value.support_items]
    assert len(found) == 1, f"expected one fitted {modality} classifier in the README's Python snippet"
    return found[0]


def _image_support(folder: Path) -> tuple[list[Path], list[str]]:
    paths = sorted(p for p in folder.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return paths, [p.parent.name for p in paths]


def _rounded(probabilities: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 4) for name, value in probabilities.items()}


# ------------------------------------------------------------------------------------------ the page
def test_every_snippet_on_the_page_is_one_this_file_runs():
    python = _blocks("python")
    assert len(python) == 2, "a new ```python block in README.md needs a test here"
    _one_block("python", "import fewshot_demo as fsd")
    _one_block("python", "from gradio_client import Client")
    bash = _blocks("bash")
    assert len(bash) == 2, "a new ```bash block in README.md needs a test here"
    _one_block("bash", "curl")
    quick_start = _one_block("bash", "scripts/app.sh")
    commands = [line.split("#")[0].strip() for line in quick_start.splitlines()]
    assert commands == QUICK_START
    for command in commands:
        assert (ROOT / command.split()[1]).is_file(), command
    assert [block for block in re.findall(r"^```(\w*)$", README.read_text(encoding="utf-8"), flags=re.M)
            if block not in ("", "python", "bash")] == []


def test_the_method_table_is_the_registry():
    text = README.read_text(encoding="utf-8")
    assert TABLE_START in text and TABLE_END in text
    table = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    assert table == methods_table(), "README.md's method table differs from the registry; paste:\n" + methods_table()
    said = " ".join(text.split())
    assert f"Defaults: `{default_method('image')}` for images, `{default_method('text')}` for text." in said


def test_every_local_link_on_the_page_leads_to_a_file():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert "docs/screenshot-image-tab.png" in local
    assert [link for link in local if not (ROOT / link).exists()] == []
    for page in ROOT.glob("docs/*.md"):
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in link:
                assert (page.parent / link).exists(), f"{page.name}: {link}"


# ------------------------------------------------------------------------------------------ Python
def test_the_python_snippet_prints_what_the_readme_says(python_snippet):
    code, printed, _ = python_snippet
    assert printed == _expected(code)


def test_the_python_snippet_answers_as_the_app_does(python_snippet, client, workdir):
    code, _, namespace = python_snippet
    folder = next(args[0] for args, _ in _calls(code, "fit") if args and isinstance(args[0], str))
    queries = [q for args, _ in _calls(code, "predict") for q in args[0] if str(q).lower().endswith(IMAGE_SUFFIXES)]
    assert folder and queries
    support, labels = _image_support(workdir / folder)
    files = [handle_file(str(workdir / q)) for q in queries]
    # No method named: the app's default, as fsd.fit uses the package's.
    app = client.predict([handle_file(str(p)) for p in support], labels, files, api_name="/predict_images")
    ours = _classifier(namespace, "image")
    assert app["method"] == ours.method and app["classes"] == ours.class_names
    saved = next(args[0] for args, _ in _calls(code, "save"))
    for reader in (ours, fsd.load(workdir / saved)):
        mine = reader.predict([workdir / q for q in queries])
        assert [p["label"] for p in app["predictions"]] == [p.label for p in mine]
        assert [p["probabilities"] for p in app["predictions"]] == [_rounded(p.probabilities) for p in mine]

    texts = next(args[0] for args, _ in _calls(code, "fit") if args and isinstance(args[0], dict))
    text_queries = [q for args, _ in _calls(code, "predict") for q in args[0] if q not in queries]
    support_texts = [text for texts_of in texts.values() for text in texts_of]
    support_labels = [name for name, texts_of in texts.items() for _ in texts_of]
    app = client.predict(support_texts, support_labels, text_queries, api_name="/predict_texts")
    mine = _classifier(namespace, "text").predict(text_queries)
    assert app["method"] == _classifier(namespace, "text").method
    assert [(p["label"], p["probabilities"]) for p in app["predictions"]] == [
        (p.label, _rounded(p.probabilities)) for p in mine]


def test_the_self_check_is_leave_one_out_through_the_app(python_snippet, client, workdir):
    """Hold out each support image in turn and ask the app: the accuracy the snippet prints."""
    code, _, namespace = python_snippet
    folder = next(args[0] for args, _ in _calls(code, "fit") if args and isinstance(args[0], str))
    support, labels = _image_support(workdir / folder)
    right = 0
    for held_out, truth in zip(support, labels):
        rest = [(p, label) for p, label in zip(support, labels) if p != held_out]
        answer = client.predict([handle_file(str(p)) for p, _ in rest], [label for _, label in rest],
                                [handle_file(str(held_out))], api_name="/predict_images")
        right += answer["predictions"][0]["label"] == truth
    assert _classifier(namespace, "image").self_check().accuracy == pytest.approx(right / len(support))


def test_evaluate_gives_the_bench_commands_numbers(python_snippet, workdir, tmp_path):
    """``fsd.evaluate`` and ``python -m fewshot_demo.bench`` on the same episodes print the same accuracies."""
    code, printed, _ = python_snippet
    (args, kwargs), = _calls(code, "evaluate")
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "fewshot_demo.bench", "--data", str(workdir / args[0]),
               "--methods", *kwargs.get("methods", ["protonet", "linear"]),
               "--n-way", str(kwargs.get("n_way", 5)), "--n-shot", *map(str, kwargs.get("n_shots", [1, 5])),
               "--n-query", str(kwargs.get("n_query", 15)), "--episodes", str(kwargs.get("episodes", 100)),
               "--seed", str(kwargs.get("seed", 0)), "--no-progress", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    bench = [f"{r['method']} {r['accuracy']:.3f} ± {r['ci95']:.3f}" for r in json.loads(out.read_text())["results"]]
    assert printed[-len(bench):] == bench


# ------------------------------------------------------------------------------------------ web API
def test_the_gradio_client_snippet_prints_what_the_readme_says_and_what_python_gets(app_url, workdir):
    code = _one_block("python", "from gradio_client import Client")
    assert f'Client("{README_URL}/")' in code
    printed, namespace = _run(code.replace(f"{README_URL}/", app_url), workdir, "README.md (gradio_client)")
    assert printed == _expected(code)
    (texts, labels), _ = next(call for call in _calls(code, "predict") if len(call[0]) == 2 and len(call[0][0]) > 2)
    queries = [p["query"] for p in namespace["answer"]["predictions"]]
    classes: dict[str, list[str]] = {}
    for text, label in zip(texts, labels):
        classes.setdefault(label, []).append(text)
    mine = fsd.fit(classes, modality="text").predict(queries)
    assert [(p["label"], p["probabilities"]) for p in namespace["answer"]["predictions"]] == [
        (p.label, _rounded(p.probabilities)) for p in mine]


def test_the_curl_snippet_prints_what_the_readme_says(app_url):
    code = _one_block("bash", "curl")
    assert code.startswith(f"URL={README_URL}\n")
    url = app_url.rstrip("/")
    if shutil.which("curl") and shutil.which("jq"):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", code.replace(f"URL={README_URL}", f"URL={url}", 1)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        printed = done.stdout.splitlines()
    else:  # the same HTTP requests, made with urllib
        printed = [_curl_by_hand(code, url)]
    assert printed == _expected(code)


def _curl_by_hand(code: str, url: str) -> str:
    """The snippet's two POST + GET calls with urllib, and its last jq filter in Python."""
    posts = re.findall(r"-X POST \$URL(\S+) .*?-d (\'[^\']*\'|\"(?:[^\"\\]|\\.)*\")", code, flags=re.S)
    assert [path for path, _ in posts] == ["/gradio_api/call/v2/fit_texts", "/gradio_api/call/v2/predict"]
    assert code.rstrip().splitlines()[-2].endswith("jq -c '[.[0].predictions[] | [.query, .label]]'")
    handle = None
    for path, body in posts:
        data = shlex.split(body)[0].replace("$HANDLE", str(handle))
        request = urllib.request.Request(url + path, data=data.encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            event = json.load(response)["event_id"]
        name = path.rsplit("/", 1)[1]
        with urllib.request.urlopen(f"{url}/gradio_api/call/{name}/{event}", timeout=120) as response:
            stream = response.read().decode()
        answer = json.loads(next(line[6:] for line in stream.splitlines() if line.startswith("data: ")))
        handle = answer[0].get("handle")
    return json.dumps([[p["query"], p["label"]] for p in answer[0]["predictions"]], separators=(",", ":"),
                      ensure_ascii=False)


if __name__ == "__main__":
    print(methods_table())
