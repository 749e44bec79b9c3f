"""The session guard checks the session id the server reads, however the request spells it.

In-process: ``SessionGuard`` in front of a FastAPI app that answers with the session id FastAPI
parsed from the same models Gradio uses, so every test shows what the server would have read
(the owner gets it back) next to what a stranger gets (403). Through the launched app: each route
that takes a session id or an event id, and what a client without cookies gets.
"""

from __future__ import annotations

import codecs
import json

import httpx
import pytest
from fastapi import FastAPI
from gradio.data_classes import CancelBody, PredictBody
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from fewshot_demo.ui.sessions import NO_COOKIE, SessionGuard

VICTIM = "victims-session"


def _echo_app() -> FastAPI:
    """Routes shaped like Gradio's, answering the session id FastAPI parsed."""
    app = FastAPI()

    @app.post("/gradio_api/queue/join")
    async def join(body: PredictBody) -> dict:
        return {"session": body.session_hash}

    @app.post("/gradio_api/cancel")
    async def cancel(body: CancelBody) -> dict:
        return {"session": body.session_hash}

    @app.get("/gradio_api/queue/data")
    async def data(session_hash: str) -> dict:
        return {"session": session_hash}

    @app.get("/gradio_api/heartbeat/{session_hash}")
    async def heartbeat(session_hash: str) -> dict:
        return {"session": session_hash}

    @app.get("/config")
    async def config() -> dict:
        return {}

    return app


@pytest.fixture(scope="module")
def guarded():
    """The guard, an owner whose session is VICTIM, and a stranger with a cookie of its own."""
    guard = SessionGuard(_echo_app(), max_body_bytes=1 << 20)
    # FastAPI itself fails to answer a 422 about a body that is not UTF-8: a 500 here, not an exception
    owner, stranger = TestClient(guard, raise_server_exceptions=False), TestClient(guard, raise_server_exceptions=False)
    assert owner.post("/gradio_api/queue/join", json={"data": [], "session_hash": VICTIM}).json() == {"session": VICTIM}
    stranger.get("/config")
    assert owner.cookies.get(SessionGuard.COOKIE) and stranger.cookies.get(SessionGuard.COOKIE)
    return guard, owner, stranger


def _body(session: str, encoding: str = "utf-8", **extra) -> bytes:
    return json.dumps({"data": [], "fn_index": 0, "event_id": "e", "session_hash": session, **extra}).encode(encoding)


SPELLINGS = [
    "application/json", "Application/JSON", "AppLicAtiOn/JsoN", "APPLICATION/JSON", "application/vnd.x+json",
    "application/VND.API+JSON", "application/json; charset=utf-8", "application/json;charset=UTF-8",
    "application/json ; q=1", " application/json", "application/json\t", "application/problem+json; x=y",
]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]


def _sent(client: TestClient, path: str, content: bytes, headers: list[tuple[str, str]]) -> httpx.Response:
    return client.post(path, content=content, headers=httpx.Headers(headers))


@pytest.mark.parametrize("content_type", SPELLINGS)
def test_every_content_type_spelling_the_server_reads_is_checked(guarded, content_type):
    _, owner, stranger = guarded
    headers = [("content-type", content_type)]
    assert _sent(owner, "/gradio_api/queue/join", _body(VICTIM), headers).json() == {"session": VICTIM}  # read
    refused = _sent(stranger, "/gradio_api/queue/join", _body(VICTIM), headers)
    assert refused.status_code == 403 and "belongs to another" in refused.json()["error"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_body_encoding_the_server_reads_is_checked(guarded, encoding):
    _, owner, stranger = guarded
    body = codecs.BOM_UTF8 + _body(VICTIM) if encoding == "utf-8-sig" else _body(VICTIM, encoding)
    headers = [("content-type", "application/json")]
    assert _sent(owner, "/gradio_api/queue/join", body, headers).json() == {"session": VICTIM}
    assert _sent(stranger, "/gradio_api/queue/join", body, headers).status_code == 403


@pytest.mark.parametrize("trick", ["two content types", "escaped", "duplicate key", "no content type", "text/plain",
                                   "chunked", "cancel"])
def test_bodies_that_hide_the_session_id_are_checked(guarded, trick):
    _, owner, stranger = guarded
    path, headers = "/gradio_api/queue/join", [("content-type", "application/json")]
    body = _body(VICTIM)
    if trick == "two content types":  # a guard that read the last header would let it through
        headers = [("content-type", "application/json"), ("content-type", "text/plain")]
    elif trick == "escaped":
        body = body.replace(b'"victims-session"', b'"\\u0076ictims\\u002dsession"')
    elif trick == "duplicate key":  # the server keeps the last
        body = b'{"data": [], "session_hash": "mine", "session_hash": "victims-session"}'
    elif trick in ("no content type", "text/plain"):
        headers = [("content-type", "text/plain")] if trick == "text/plain" else []
    elif trick == "cancel":
        path, body = "/gradio_api/cancel", json.dumps({"session_hash": VICTIM, "fn_index": 0, "event_id": "e"}).encode()
    if trick == "chunked":
        pieces = [body[:7], body[7:20], body[20:]]
        refused = stranger.post(path, content=iter(pieces), headers=httpx.Headers(headers))
    else:
        refused = _sent(stranger, path, body, headers)
    assert refused.status_code == 403
    if trick not in ("no content type", "text/plain", "two content types"):  # the server reads no JSON there
        assert _sent(owner, path, body, headers).json() == {"session": VICTIM}


@pytest.mark.parametrize("query", [f"session_hash={VICTIM}", "session_hash=mine&session_hash=victims-session",
                                   "session_hash=victims%2Dsession", "session_hash=&session_hash=victims-session"])
def test_the_query_string_is_read_as_the_server_reads_it(guarded, query):
    _, owner, stranger = guarded
    assert owner.get(f"/gradio_api/queue/data?{query}").json() == {"session": VICTIM}
    assert stranger.get(f"/gradio_api/queue/data?{query}").status_code == 403
    assert stranger.get(f"/gradio_api/heartbeat/{VICTIM}").status_code == 403


JSON_TYPES = st.builds(
    lambda main, sub, suffix, params, pad: f"{pad}{main}/{sub}{suffix}{params}",
    main=st.sampled_from(["application", "Application", "APPLICATION", "aPpLiCaTiOn"]),
    sub=st.sampled_from(["json", "JSON", "Json", "vnd.x", "ld", "problem", "vnd.api.v2"]),
    suffix=st.sampled_from(["", "+json", "+JSON", "+Json"]),
    params=st.sampled_from(["", "; charset=utf-8", ";charset=UTF-16", " ; a=b", ";q=0.9; x=\"y\""]),
    pad=st.sampled_from(["", " ", "\t"]),
)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content_type=JSON_TYPES, encoding=st.sampled_from(ENCODINGS[1:] + ["utf-8"]),
       decoy=st.booleans(), extra=st.dictionaries(st.sampled_from(["trigger_id", "batched", "x"]), st.none()))
def test_property_no_spelling_lets_a_stranger_into_a_session_the_server_would_read(
        guarded, content_type, encoding, decoy, extra):
    """Whatever the spelling, either the server does not read the body as JSON, or the stranger gets 403."""
    guard, owner, stranger = guarded
    payload = {"data": [], **extra, **({"session_hash": "a-decoy"} if decoy else {})}
    text = json.dumps(payload)[:-1] + f', "session_hash": "{VICTIM}"}}'
    body = codecs.BOM_UTF8 + text.encode() if encoding == "utf-8-sig" else text.encode(encoding)
    headers = [("content-type", content_type)]
    answered = _sent(stranger, "/gradio_api/queue/join", body, headers)
    assert answered.status_code == 403 or VICTIM not in answered.text
    read_by_server = _sent(owner, "/gradio_api/queue/join", body, headers).status_code == 200
    assert answered.status_code == 403 or not read_by_server
    assert _bare(guard).post("/gradio_api/queue/join", content=body, headers=headers).status_code in (403, 422, 500)


def _bare(guard: SessionGuard) -> TestClient:
    """A client that sends no cookie (a new one for every request)."""
    return TestClient(guard, raise_server_exceptions=False)


# ------------------------------------------------------------------------------------------ cookieless clients
def test_a_session_opened_without_a_cookie_is_bound_to_the_cookie_its_answer_sets():
    guard = SessionGuard(_echo_app())
    first = TestClient(guard)
    opened = first.post("/gradio_api/queue/join", json={"data": [], "session_hash": "opened-bare"})
    cookie = opened.cookies.get(SessionGuard.COOKIE)
    assert opened.status_code == 200 and cookie
    again = _bare(guard).get("/gradio_api/queue/data", params={"session_hash": "opened-bare"})
    assert again.status_code == 403 and again.json()["error"] == NO_COOKIE  # says what to do
    assert first.get("/gradio_api/queue/data", params={"session_hash": "opened-bare"}).status_code == 200


# ------------------------------------------------------------------------------------------ the launched app
def _event(url: str, client: httpx.Client, session: str, api: str = "warmup") -> str:
    posted = client.post(url + f"gradio_api/call/{api}", json={"data": [], "session_hash": session})
    assert posted.status_code == 200, posted.text
    return posted.json()["event_id"]


def test_every_route_of_the_app_that_names_a_session_checks_its_owner(app_url):
    owner, stranger = httpx.Client(), httpx.Client()
    owner.get(app_url + "config")
    stranger.get(app_url + "config")
    session = "route-owner-session"
    event_id = _event(app_url, owner, session)
    join = {"data": [], "fn_index": 0, "session_hash": session}
    refused = {
        "queue/join": stranger.post(app_url + "gradio_api/queue/join", json=join),
        "queue/join (AppLicAtiOn/JsoN)": stranger.post(app_url + "gradio_api/queue/join", content=json.dumps(join),
                                                       headers={"content-type": "AppLicAtiOn/JsoN"}),
        "call": stranger.post(app_url + "gradio_api/call/warmup", json={"data": [], "session_hash": session}),
        "run": stranger.post(app_url + "gradio_api/run/warmup", json={"data": [], "session_hash": session}),
        "cancel": stranger.post(app_url + "gradio_api/cancel",
                                json={"session_hash": session, "fn_index": 0, "event_id": event_id}),
        "cancel by event id": stranger.post(app_url + "gradio_api/cancel",
                                            json={"session_hash": "mine", "fn_index": 0, "event_id": event_id}),
        "queue/data": stranger.get(app_url + "gradio_api/queue/data", params={"session_hash": session}),
        "heartbeat": stranger.get(app_url + f"gradio_api/heartbeat/{session}"),
        "call result by event id": stranger.get(app_url + f"gradio_api/call/warmup/{event_id}"),
        "stream by event id": stranger.post(app_url + f"gradio_api/stream/{event_id}", json={"data": []}),
        "cookieless": httpx.get(app_url + f"gradio_api/call/warmup/{event_id}"),
    }
    assert {route: r.status_code for route, r in refused.items()} == dict.fromkeys(refused, 403)
    answer = owner.get(app_url + f"gradio_api/call/warmup/{event_id}", timeout=60)
    assert "event: complete" in answer.text and "ready" in answer.text  # the owner still gets its result


def test_uploads_stream_past_the_body_limit_and_name_no_session(app_url):
    big = b"\0" * (11 * 2**20)  # more than FEWSHOT_MAX_REQUEST_MB (10), less than the upload limit (25)
    uploaded = httpx.post(app_url + "gradio_api/upload", files={"files": ("big.bin", big)}, timeout=60)
    assert uploaded.status_code == 200 and uploaded.json()[0].endswith("big.bin")


def test_a_cookieless_call_without_a_session_id_gets_a_session_of_its_own(app_url):
    """curl's two steps, no cookies: the event id the first answer hands over is the session's only key."""
    event_id = httpx.post(app_url + "gradio_api/call/warmup", json={"data": []}).json()["event_id"]
    assert "ready" in httpx.get(app_url + f"gradio_api/call/warmup/{event_id}", timeout=60).text
    named = httpx.post(app_url + "gradio_api/call/warmup", json={"data": [], "session_hash": "bare-and-named"})
    assert named.status_code == 200
    again = httpx.post(app_url + "gradio_api/call/warmup", json={"data": [], "session_hash": "bare-and-named"})
    assert again.status_code == 403 and "no owner cookie" in again.json()["error"]
