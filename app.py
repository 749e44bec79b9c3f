"""fewshot-demo: few-shot image and text classification, meta-learning next to transfer learning.

Run with `python app.py`; on Hugging Face Spaces this file is the entry point.
"""

from __future__ import annotations

import gc
import os
import threading

import gradio as gr
import torch

from fewshot_demo.config.settings import limits, settings
from fewshot_demo.ui import api, compare_tab, events
from fewshot_demo.ui.compare_tab import build_compare_tab
from fewshot_demo.ui.image_examples import EXAMPLES_DIR
from fewshot_demo.ui.image_tab import build_image_tab
from fewshot_demo.ui.mcp_server import McpBlocks
from fewshot_demo.ui.text_tab import build_text_tab

TITLE = "Few-shot learning demo"
INTRO = """# Few-shot learning demo
Teach a classifier new classes from a handful of examples, and compare meta-learning with transfer
learning on the same episodes. Everything runs offline on bundled pretrained weights:
EfficientNet-Lite0 (ImageNet) for images, all-MiniLM-L6-v2 for text.
"""

#: One loader of the default models: start-up starts it, /warmup waits for it.
warm = api.Warmup()


def warm_up() -> None:
    """Load the default backbone and text encoder in the background, so first clicks do not wait;
    then keep what is loaded by then out of the garbage collector's full passes."""
    if warm.load():
        # About 650,000 objects (models, the page, libraries) live as long as the server. A full
        # collection scanned them all, 0.3 s on 2 cores, holding every request in flight meanwhile;
        # frozen, they are skipped, and a full pass costs what the sessions' own objects cost.
        gc.freeze()


def wait_until_warm() -> str:
    """Load the default image backbone and text encoder if they are not yet; returns "ready" once both are loaded.

    Returns:
        "ready". A call during start-up waits for the loading in progress; calling it again is harmless.
    """
    return warm()


def end_session(request: gr.Request) -> None:
    """When a browser session ends: stop its comparison, remove its temporary files, free its id."""
    compare_tab.stop(request)
    demo.end_session(request.session_hash)


def build_demo() -> McpBlocks:
    """Build the whole app. Nothing heavy happens here: models load in the background at launch.

    Every event is declared where it is wired, with its API visibility, concurrency group, error
    policy and GPU time (``fewshot_demo.ui.events``); nothing rewrites them afterwards. The public
    endpoints are also MCP tools (``fewshot_demo.ui.mcp_server``; ``FEWSHOT_MCP=0`` turns that off).
    """
    # One intra-op thread per request: a small server spends its cores on concurrent users, and a
    # second thread on a busy core turns a 16 ms forward pass into seconds (see device.one_thread).
    torch.set_num_threads(settings().torch_threads)
    age = int(limits().temp_max_age_s)
    with McpBlocks(title=TITLE, delete_cache=(max(60, min(600, age // 2)), age)) as built:
        gr.Markdown(INTRO)
        with gr.Tab("Images", id="images"):
            images = build_image_tab()
        with gr.Tab("Text", id="text"):
            texts = build_text_tab()
        with gr.Tab("Transfer vs meta", id="compare"):
            # The one cross-tab link: the comparison offers the classes of the tab classified last.
            build_compare_tab(image_session=images.session, text_session=texts.session)
        api.add_endpoints(wait_until_warm)
        events.on_unload(built, end_session)
    return built


demo = build_demo()

if __name__ == "__main__":
    threading.Thread(target=warm_up, daemon=True).start()
    demo.queue().launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),  # also reachable inside a Space
        allowed_paths=[str(EXAMPLES_DIR.parent)],
    )
