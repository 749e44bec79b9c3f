"""The app as a Model Context Protocol server: its public endpoints as tools for agents.

    with McpBlocks(title="...") as demo:      # a GuardedBlocks that also serves MCP
        ...
    demo.queue().launch()                    # MCP at /gradio_api/mcp/ unless FEWSHOT_MCP=0

Gradio (``launch(mcp_server=True)``, ``gradio.mcp``) turns each public endpoint into a tool named
after its function, described by its docstring, and runs a tool call as a queued call of that
endpoint through a ``gradio_client`` of its own (the loopback): the same queue, concurrency
groups, limits and error messages as the HTTP API. Every MCP call runs in that client's one
session; a handle belongs to whoever holds it, whichever way it was fitted.

What this module changes in Gradio 6's MCP layer (``gradio.mcp.GradioMCPServer``), each naming
the upstream behaviour (``tests/test_mcp.py`` shows each one on plain Gradio):

- ``_prepare_tool_call_args`` forwards the MCP request's headers, its ``Cookie`` included, to the
  loopback's ``queue/join``, while the loopback reads the result with its own cookie: the session
  guard (``ui.sessions``) then sees the loopback's session used by two owners and refuses it (403).
  ``WithoutMcpCookies`` drops the ``Cookie`` header of requests to the MCP routes, which read none.
- ``postprocess_output_data`` writes an answer (a dict) as ``str(answer)``, a Python literal; the
  tools answer JSON here, as the HTTP API does.
- Every public endpoint is a tool; only ``ui.api.MCP_TOOLS`` are offered (not /warmup), and
  the tabs' events, never public, are none.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.middleware import Middleware

from fewshot_demo.config.settings import settings
from fewshot_demo.ui.api import MCP_TOOLS
from fewshot_demo.ui.blocks import GuardedBlocks

#: Where Gradio serves MCP (streamable HTTP at the folder itself, SSE at ``sse``, the tools' schema at ``schema``).
MCP_PATH = "/gradio_api/mcp"


class WithoutMcpCookies:
    """ASGI middleware: requests to the MCP routes reach the app without their ``Cookie`` header.

    Args:
        app: the ASGI app.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (scope.get("path", "").rstrip("/") + "/").startswith(MCP_PATH + "/"):
            scope = dict(scope, headers=[(key, value) for key, value in scope.get("headers", [])
                                         if key.lower() != b"cookie"])
        await self.app(scope, receive, send)


def fit_to_app(server: Any) -> Any:
    """Gradio's MCP server for this app: only ``MCP_TOOLS``, answers in JSON (see the module docstring)."""
    server.tool_to_endpoint = {tool: endpoint for tool, endpoint in server.tool_to_endpoint.items()
                               if endpoint.lstrip("/") in MCP_TOOLS}
    postprocess = server.postprocess_output_data

    def as_json(data: Any, root_url: str) -> Any:
        return postprocess([json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value
                            for value in data], root_url)

    server.postprocess_output_data = as_json
    return server


class McpBlocks(GuardedBlocks):
    """``GuardedBlocks`` that serves MCP by default (``FEWSHOT_MCP=0``, or ``launch(mcp_server=False)``, turns it off).

    Gradio creates its MCP server at launch and sets it as ``mcp_server_obj``; the property fits it
    to the app before the server answers anything (``fit_to_app``).
    """

    @property
    def mcp_server_obj(self) -> Any:
        return self.__dict__.get("_mcp_server_obj")

    @mcp_server_obj.setter
    def mcp_server_obj(self, server: Any) -> None:
        self.__dict__["_mcp_server_obj"] = None if server is None else fit_to_app(server)

    def launch(self, *args: Any, mcp_server: bool | None = None, app_kwargs: dict[str, Any] | None = None,
               **kwargs: Any) -> Any:
        serve = settings().mcp_server if mcp_server is None else mcp_server
        app_kwargs = dict(app_kwargs or {})
        if serve:  # outermost, so the session guard sees the requests as the MCP layer will
            app_kwargs["middleware"] = [Middleware(WithoutMcpCookies), *app_kwargs.get("middleware", [])]
        return super().launch(*args, mcp_server=serve, app_kwargs=app_kwargs, **kwargs)
