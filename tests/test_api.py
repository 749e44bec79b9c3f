"""The public API as a caller reaches it: named endpoints, handles, the API page, owned sessions."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.serving.handles import HandleStore
from fewshot_demo.ui.api import PUBLIC_ENDPOINTS

ROOT = Path(__file__).resolve().parents[1]
ANIMALS = ROOT / "examples" / "images" / "animals"
TOPICS = ROOT / "examples" / "text" / "topics"


def _support() -> tuple[list, list[str]]:
    paths = sorted(ANIMALS.glob("support/*/*"))
    return [handle_file(str(p)) for p in paths], [p.parent.name for p in paths]


def _queries() -> tuple[list, list[str]]:
    paths = sorted(ANIMALS.glob("query/*/*"))
    return [handle_file(str(p)) for p in paths], [p.parent.name for p in paths]


def test_the_api_page_lists_only_the_public_endpoints_each_described(app_url):
    info = httpx.get(app_url + "gradio_api/info").json()
    assert sorted(info["named_endpoints"]) == sorted(f"/{name}" for name in PUBLIC_ENDPOINTS)
    for name, endpoint in info["named_endpoints"].items():
        assert len(endpoint["description"]) > 30, name
    every = httpx.get(app_url + "gradio_api/info?all_endpoints=True").json()["named_endpoints"]
    assert "/image_classify" in every and "/compare_run" in every  # hidden, still callable


def test_fit_once_then_classify_by_handle(client):
    support, labels = _support()
    fitted = client.predict(support, labels, "protonet", api_name="/fit_images")
    assert fitted["classes"] == ["bird", "bovine", "fish"] and fitted["support_per_class"] == {"bird": 5, "bovine": 5, "fish": 5}
    assert len(fitted["handle"]) >= 32 and fitted["expires_after_idle_s"] > 0
    queries, truth = _queries()
    answer = client.predict(fitted["handle"], queries, api_name="/predict")
    predictions = answer["predictions"]
    assert [p["query"] for p in predictions] == [Path(q["path"]).name for q in queries]
    assert sum(p["label"] == t for p, t in zip(predictions, truth)) >= len(truth) - 1
    for prediction in predictions:
        assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-3
        assert len(prediction["nearest"]) == 3 and prediction["nearest"][0]["item"].split("/")[0] in fitted["classes"]
    assert client.predict(fitted["handle"], api_name="/forget") == {"handle": fitted["handle"], "forgotten": True}
    with pytest.raises(AppError, match="unknown or expired handle"):
        client.predict(fitted["handle"], queries[:1], api_name="/predict")


def test_query_images_inline_as_data_urls_classify_as_files_do(client):
    """/predict takes an image as a data URL too (no upload request); damaged ones get messages."""
    import base64

    support, labels = _support()
    fitted = client.predict(support, labels, "protonet", api_name="/fit_images")
    paths = sorted(ANIMALS.glob("query/*/*"))[:3]
    inline = [f"data:image/{p.suffix.lstrip('.').replace('jpg', 'jpeg')};base64,{base64.b64encode(p.read_bytes()).decode()}"
              for p in paths]
    by_file = client.predict(fitted["handle"], [handle_file(str(p)) for p in paths], api_name="/predict")["predictions"]
    by_url = client.predict(fitted["handle"], inline, api_name="/predict")["predictions"]
    assert [p["query"] for p in by_url] == ["query 1", "query 2", "query 3"]
    assert [(p["label"], p["probabilities"]) for p in by_url] == [(p["label"], p["probabilities"]) for p in by_file]
    not_an_image = "data:image/png;base64," + base64.b64encode(b"plain text, not a picture").decode()
    mixed = client.predict(fitted["handle"], [inline[0], not_an_image], api_name="/predict")
    assert mixed["predictions"][0]["label"] == by_file[0]["label"]
    assert mixed["predictions"][1]["query"] == "query 2" and "query 2:" in mixed["predictions"][1]["error"]
    for queries, message in (([inline[0], "a cat"], "or as data URLs"),
                             (["data:image/png;base64,@@@"], "query 1 is not valid base64")):
        with pytest.raises(AppError, match=message):
            client.predict(fitted["handle"], queries, api_name="/predict")


def test_images_in_one_call_from_a_zip_of_class_folders(client, tmp_path):
    archive = tmp_path / "animals.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(ANIMALS.glob("support/*/*")):
            zipped.write(path, f"animals/{path.parent.name}/{path.name}")
    queries, truth = _queries()
    answer = client.predict([handle_file(str(archive))], None, queries, "linear", api_name="/predict_images")
    assert answer["method"] == "linear" and answer["classes"] == ["bird", "bovine", "fish"]
    assert sum(p["label"] == t for p, t in zip(answer["predictions"], truth)) >= len(truth) - 2


def test_texts_from_a_table_and_from_lists(client):
    fitted = client.predict(None, None, "protonet", handle_file(str(TOPICS / "support.csv")), api_name="/fit_texts")
    assert fitted["modality"] == "text" and fitted["method"] == "protonet" and len(fitted["classes"]) >= 3
    queries = (TOPICS / "queries.txt").read_text().splitlines()[:3]
    answer = client.predict(fitted["handle"], queries, api_name="/predict")
    assert [p["query"] for p in answer["predictions"]] == queries
    texts = ["hello there", "good morning", "will it rain?", "is it hot today"]
    answer = client.predict(texts, ["greeting", "greeting", "weather", "weather"], ["hi!", "sunny tomorrow?"],
                            api_name="/predict_texts")
    assert [p["label"] for p in answer["predictions"]] == ["greeting", "weather"]
    assert answer["predictions"][0]["nearest"][0] == {"item": "hello there", "class": "greeting",
                                                       "similarity": answer["predictions"][0]["nearest"][0]["similarity"]}


@pytest.mark.parametrize("call, message", [
    (lambda c, s, l: c.predict(["/etc/passwd"], ["a"], api_name="/fit_images"), "send support images as an uploaded file"),
    (lambda c, s, l: c.predict(s[:2], ["bird"], api_name="/fit_images"), "2 images but 1 labels"),
    (lambda c, s, l: c.predict(s, l, "maml", {"inner_steps": 10**6}, api_name="/fit_images"), "inner_steps"),
    (lambda c, s, l: c.predict(s, l, "no_such_method", api_name="/fit_images"), "no_such_method"),
    (lambda c, s, l: c.predict(["a", "b"], ["x", "y"], ["q"] * 201, api_name="/predict_texts"), "at most 200"),
    (lambda c, s, l: c.predict("not-a-handle", ["q"], api_name="/predict"), "unknown or expired handle"),
])
def test_bad_calls_get_messages_that_say_what_to_do(client, call, message):
    support, labels = _support()
    with pytest.raises(AppError, match=message):
        call(client, support, labels)


def test_a_text_handle_refuses_image_queries_and_the_other_way_round(client):
    fitted = client.predict(["hi", "rain"], ["greeting", "weather"], api_name="/fit_texts")
    queries, _ = _queries()
    with pytest.raises(AppError, match="text classifier: send the queries as strings"):
        client.predict(fitted["handle"], queries[:1], api_name="/predict")


@dataclass
class Held:
    """Stands for a fitted classifier: what the store counts is the tensors it holds."""

    features: torch.Tensor


def test_handles_expire_and_are_bounded_in_number_and_memory():
    now = [0.0]
    store = HandleStore(max_handles=2, max_bytes=10_000, ttl_s=60, clock=lambda: now[0])
    first, second = store.put(Held(torch.zeros(100))), store.put(Held(torch.zeros(100)))
    third = store.put(Held(torch.zeros(100)))  # the least recently used goes first
    with pytest.raises(UserInputError, match="unknown or expired"):
        store.get(first)
    assert store.get(second).nbytes == 400 and store.get(third) and len(store) == 2
    now[0] = 61.0
    with pytest.raises(UserInputError, match="unknown or expired"):
        store.get(second)
    with pytest.raises(UserInputError, match="more than the"):
        store.put(Held(torch.zeros(5000)))
    store.put(Held(torch.zeros(2000)))
    store.put(Held(torch.zeros(2000)))  # 16 000 bytes: the older one goes
    assert len(store) == 1


def test_a_session_id_alone_does_not_reach_someone_elses_session(app_url, client):
    """Another client that learns this client's session hash cannot listen to it, nor stop its run."""
    client.predict(api_name="/warmup")
    session = client.session_hash
    stranger = httpx.Client(base_url=app_url)
    stranger.get("/config")  # gets its own owner cookie
    joined = stranger.post("gradio_api/queue/join", json={
        "data": [], "fn_index": _fn_index(app_url, "compare_stop"), "session_hash": session, "event_data": None})
    assert joined.status_code == 403 and "belongs to another" in joined.json()["error"]
    assert stranger.get("gradio_api/queue/data", params={"session_hash": session}).status_code == 403
    anonymous = httpx.post(app_url + "gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": session})
    assert anonymous.status_code == 403
    assert client.predict(api_name="/warmup") == "ready"  # the owner still gets in


def test_a_client_that_opens_its_session_without_a_cookie_keeps_it_with_the_cookie_it_is_given(app_url):
    """A script whose first call names its session has no cookie yet; the answer hands it one, and
    its next calls, now with that cookie, are still its own (they got 403 before)."""
    from tools.latency import AppApi

    api = AppApi(app_url, session_hash="opened-without-a-cookie")
    assert api.call("warmup", []) == ["ready"]
    assert api.http.cookies.get("fewshot_owner")
    assert api.call("warmup", []) == ["ready"]
    stranger = httpx.Client(base_url=app_url)
    stranger.get("/config")  # its own cookie
    refused = stranger.post("gradio_api/call/warmup", json={"data": [], "session_hash": "opened-without-a-cookie"})
    assert refused.status_code == 403


def test_an_oversized_json_body_is_refused_before_it_is_read(app_url):
    body = json.dumps({"data": [["x" * 1024] * 11 * 1024], "fn_index": 0, "session_hash": "big"})
    response = httpx.post(app_url + "gradio_api/queue/join", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "larger than" in response.json()["error"]


def _fn_index(app_url: str, api_name: str) -> int:
    config = httpx.get(app_url + "config").json()
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)


def test_a_fresh_client_gets_every_public_endpoint(app_url):
    fresh = Client(app_url, verbose=False)
    endpoints = fresh.view_api(return_format="dict")["named_endpoints"]
    assert set(PUBLIC_ENDPOINTS) <= {name.lstrip("/") for name in endpoints}


def test_heavy_handlers_ask_for_a_gpu_where_the_spaces_package_is(monkeypatch):
    import sys
    import types

    import gradio as gr

    from fewshot_demo.ui import events

    asked = []

    def gpu(duration):
        def decorate(fn):
            asked.append((fn.__name__, duration))
            return fn

        return decorate

    def classify(text: str) -> str:
        return text

    def light(text: str) -> str:
        return text

    monkeypatch.setitem(sys.modules, "spaces", None)  # not importable, as anywhere but on a Space
    assert events.on_gpu(classify, 60) is classify
    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    with gr.Blocks() as demo:
        events.endpoint(classify, "classify", events.CLASSIFY)
        events.endpoint(light, "light")
        box = gr.Textbox()
        events.on(box.submit, classify, box, box, group=events.COMPARE)
    assert asked == [("classify", events.CLASSIFY.gpu_seconds), ("classify", events.COMPARE.gpu_seconds)]
    assert [fn.fn("x") for fn in demo.fns.values()] == ["x", "x", "x"]  # the handlers still answer
