"""The app as an MCP server, as an agent reaches it: the ``mcp`` client over Gradio's streamable
HTTP transport lists the tools and classifies texts and images end to end, with the same answers
as the HTTP API; and each upstream behaviour ``ui.mcp_server`` works around, shown on plain Gradio.

The transcript (tools listed, one call of each) goes to tests/artifacts/mcp-transcript.txt.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import re
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest
from gradio.mcp import GradioMCPServer
from gradio_client import handle_file
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel.server import request_ctx
from mcp.shared.context import RequestContext
from starlette.requests import Request

from fewshot_demo.config.settings import Settings
from fewshot_demo.ui.api import MCP_TOOLS
from fewshot_demo.ui.mcp_server import fit_to_app

ROOT = Path(__file__).resolve().parents[1]
ANIMALS = ROOT / "examples" / "images" / "animals"
SUPPORT = sorted(ANIMALS.glob("support/*/*"))[::2]  # 3 classes, 2-3 photos each: a quick fit
QUERIES = [ANIMALS / "query" / "bird" / "pigeon.jpg", ANIMALS / "query" / "fish" / "stripedfish.jpg"]
DATA_URL_BODY = re.compile(r"base64,([A-Za-z0-9+/=]+)")  # the transcript shows a data URL by its start
TEXTS = {"texts": ["hello there", "good morning", "will it rain?", "is it hot today"],
         "labels": ["greeting", "greeting", "weather", "weather"]}


def run_apart(coroutine):
    """asyncio.run in a thread of its own: an earlier test (playwright's sync API) may leave an event loop
    running in this one, where asyncio.run refuses to start."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def data_url(path: Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()


class Transcript:
    """What the agent saw, written as it went: the tools, then each call and its answer."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def call(self, tool: str, arguments: dict[str, Any], answer: str) -> None:
        shown = DATA_URL_BODY.sub(lambda body: f"base64,...({len(body.group(1))} chars)", json.dumps(arguments))
        self.lines += [f"call {tool} {shown}", f"  -> {answer[:1200]}", ""]


async def session_calls(url: str, steps: Any) -> Any:
    """Run ``steps(call, tools)`` in one MCP session; ``call(tool, arguments)`` returns (is_error, text)."""
    async with streamable_http_client(url) as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools

        async def call(tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
            result = await session.call_tool(tool, arguments)
            return bool(result.isError), "".join(getattr(part, "text", "") for part in result.content)

        return await steps(call, tools)


@pytest.fixture(scope="module")
def mcp_url(app_url) -> str:
    return app_url + "gradio_api/mcp/"


@pytest.fixture(scope="module")
def transcript(artifacts):
    record = Transcript()
    yield record
    (artifacts / "mcp-transcript.txt").write_text("\n".join(record.lines) + "\n")


def test_tools_are_the_public_api_described_for_an_agent(mcp_url, transcript):
    tools = run_apart(session_calls(mcp_url, lambda call, tools: asyncio.sleep(0, tools)))
    assert sorted(tool.name for tool in tools) == sorted(MCP_TOOLS)  # no /warmup, no tab event
    by_name = {tool.name: tool for tool in tools}
    for name in ("fit_images", "predict_images", "predict"):
        text = by_name[name].description + json.dumps(by_name[name].inputSchema)
        assert "data:image/jpeg;base64," in text and "handle" in by_name["predict"].description, name
    assert by_name["predict"].inputSchema["required"] == ["handle", "queries"]
    transcript.lines += [f"MCP server {mcp_url} (streamable HTTP): {len(tools)} tools", ""]
    for tool in tools:
        properties = tool.inputSchema.get("properties", {})
        transcript.lines += [f"tool {tool.name}({', '.join(properties)})", f"  {tool.description}"]
        transcript.lines += [f"  - {key}: {value.get('description', '')}" for key, value in properties.items()]
    transcript.lines.append("")


def test_texts_fit_then_predict_by_handle_and_in_one_call_as_the_http_api(mcp_url, client, transcript):
    queries = ["hi!", "storm tonight?"]

    async def steps(call, tools):
        error, fitted = await call("fit_texts", TEXTS)
        assert not error, fitted
        transcript.call("fit_texts", TEXTS, fitted)
        handle = json.loads(fitted)["handle"]
        by_handle = await call("predict", {"handle": handle, "queries": queries})
        transcript.call("predict", {"handle": handle, "queries": queries}, by_handle[1])
        one_call = await call("predict_texts", {**TEXTS, "queries": queries})
        transcript.call("predict_texts", {**TEXTS, "queries": queries}, one_call[1])
        return handle, by_handle, one_call

    handle, (error, by_handle), (one_error, one_call) = run_apart(session_calls(mcp_url, steps))
    assert not error and not one_error, (by_handle, one_call)
    http = client.predict(handle, queries, api_name="/predict")  # the MCP handle, over the HTTP API
    answer = json.loads(by_handle)
    assert [p["label"] for p in answer["predictions"]] == ["greeting", "weather"]
    assert answer["predictions"] == http["predictions"] == json.loads(one_call)["predictions"]


def test_images_as_data_urls_fit_predict_forget_as_the_http_api(mcp_url, client, transcript):
    support, labels = [data_url(p) for p in SUPPORT], [p.parent.name for p in SUPPORT]
    queries = [data_url(p) for p in QUERIES]

    async def steps(call, tools):
        fitted = await call("fit_images", {"support": support, "labels": labels})
        assert not fitted[0], fitted
        transcript.call("fit_images", {"support": support, "labels": labels}, fitted[1])
        handle = json.loads(fitted[1])["handle"]
        by_handle = await call("predict", {"handle": handle, "queries": queries})
        transcript.call("predict", {"handle": handle, "queries": queries}, by_handle[1])
        arguments = {"support": support, "labels": labels, "queries": queries[:1]}
        one_call = await call("predict_images", arguments)
        transcript.call("predict_images", arguments, one_call[1])
        forgotten = await call("forget", {"handle": handle})
        transcript.call("forget", {"handle": handle}, forgotten[1])
        again = await call("predict", {"handle": handle, "queries": queries})
        url = await call("predict_images", {**arguments, "queries": ["https://example.com/owl.jpg"]})
        warmup = await call("wait_until_warm", {})
        return by_handle, one_call, forgotten, again, url, warmup

    by_handle, one_call, forgotten, again, url, warmup = run_apart(session_calls(mcp_url, steps))
    assert not by_handle[0] and not one_call[0], (by_handle, one_call)
    answer = json.loads(by_handle[1])
    assert [p["label"] for p in answer["predictions"]] == ["bird", "fish"]
    fitted = client.predict([handle_file(str(p)) for p in SUPPORT], labels, api_name="/fit_images")
    http = client.predict(fitted["handle"], [handle_file(str(p)) for p in QUERIES], api_name="/predict")
    for mcp_prediction, http_prediction in zip(answer["predictions"], http["predictions"]):
        assert mcp_prediction["label"] == http_prediction["label"]
        for name, p in http_prediction["probabilities"].items():
            assert abs(mcp_prediction["probabilities"][name] - p) < 1e-3, (mcp_prediction, http_prediction)
    assert json.loads(one_call[1])["predictions"][0]["probabilities"] == answer["predictions"][0]["probabilities"]
    assert json.loads(forgotten[1])["forgotten"] is True
    assert again[0] and "unknown or expired handle" in again[1]  # the same rules as over HTTP
    assert url[0] and "fetches no URLs" in url[1] and "data URL" in url[1]
    assert warmup[0] and "Unknown tool" in warmup[1]


def test_an_uploaded_files_link_is_a_support_image(mcp_url, app_url):
    """The link an upload returns (what Gradio's upload_file_to_gradio hands an agent) is read, not fetched."""
    with SUPPORT[0].open("rb") as image:
        uploaded = httpx.post(app_url + "gradio_api/upload", files={"files": (SUPPORT[0].name, image)}).json()[0]
    links = [f"{app_url}gradio_api/file={uploaded}"] + [data_url(p) for p in SUPPORT[1:]]
    arguments = {"support": links, "labels": [p.parent.name for p in SUPPORT], "queries": [data_url(QUERIES[0])]}
    error, text = run_apart(session_calls(mcp_url, lambda call, tools: call("predict_images", arguments)))
    assert not error, text
    assert json.loads(text)["predictions"][0]["label"] == "bird"


def test_fewshot_mcp_0_turns_the_mcp_server_off():
    assert Settings.from_environment({}).mcp_server is True
    assert Settings.from_environment({"FEWSHOT_MCP": "0"}).mcp_server is False


# ------------------------------------------------------------------------------------------ upstream
def _plain_server() -> GradioMCPServer:
    def classify(images: list[gr.FileData], note: str) -> dict:
        """Classify.

        Args:
            images: images.
            note: a note.
        """
        return {"ok": True}

    with gr.Blocks() as demo:
        gr.api(classify, api_name="classify")
    return GradioMCPServer(demo)


def test_upstream_a_tool_call_forwards_the_callers_cookie_to_the_queue():
    """Why ``WithoutMcpCookies``: the caller's Cookie would reach the loopback's queue/join."""
    server = _plain_server()
    scope = {"type": "http", "method": "POST", "path": "/gradio_api/mcp/", "query_string": b"",
             "headers": [(b"cookie", b"fewshot_owner=caller"), (b"host", b"127.0.0.1")]}
    token = request_ctx.set(RequestContext(request_id=1, meta=None, session=None, lifespan_context=None,
                                           request=Request(scope)))
    try:
        _, arguments, headers, _ = server._prepare_tool_call_args("classify", {"images": ["data:x"], "note": "n"})
    finally:
        request_ctx.reset(token)
    assert headers["cookie"] == "fewshot_owner=caller"
    assert arguments[0] == ["data:x"]  # a list of files stays the strings sent: ui.api reads data URLs itself


def test_upstream_answers_are_python_literals_and_json_here():
    server = _plain_server()
    assert server.postprocess_output_data([{"ok": True, "none": None}], "http://x")[0].text == "{'ok': True, 'none': None}"
    fitted = fit_to_app(server)
    assert fitted.postprocess_output_data([{"ok": True, "none": None}], "http://x")[0].text == '{"ok": true, "none": null}'
    assert fitted.tool_to_endpoint == {}  # "classify" is not one of this app's tools
