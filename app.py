"""fewshot-demo: few-shot image and text classification, meta-learning next to transfer learning.

Run with `python app.py`; on Hugging Face Spaces this file is the entry point.
"""

from __future__ import annotations

import os
import threading

import gradio as gr
import torch

from fewshot_demo.settings import settings

from fewshot_demo.ui.compare_tab import build_compare_tab
from fewshot_demo.ui.image_tab import EXAMPLES_DIR, build_image_tab
from fewshot_demo.ui.text_tab import build_text_tab

TITLE = "Few-shot learning demo"
INTRO = """# Few-shot learning demo
Teach a classifier new classes from a handful of examples, and compare meta-learning with transfer
learning on the same episodes. Everything runs offline on bundled pretrained weights:
EfficientNet-Lite0 (ImageNet) for images, all-MiniLM-L6-v2 for text.
"""


_warm = threading.Event()
_warm_started = threading.Event()
_warm_lock = threading.Lock()


def warm_up() -> None:
    """Load the default backbone and text encoder in the background, so first clicks do not wait."""
    from fewshot_demo.backbones import load_backbone
    from fewshot_demo.text.encoders import load_encoder

    try:
        load_backbone()
        load_encoder()
    finally:
        _warm.set()


def start_warm_up() -> None:
    """Start the warm-up in the background, once: a second one would load the models again, and a
    /warmup call that started it while the launch's was running kept the CPU busy for a second after
    it answered (the first click then took 1.7 s instead of 0.8 s)."""
    with _warm_lock:
        if not _warm_started.is_set():
            _warm_started.set()
            threading.Thread(target=warm_up, daemon=True).start()


def wait_until_warm() -> str:
    """API: returns once the default models are loaded (used by health checks and benchmarks)."""
    start_warm_up()
    _warm.wait(timeout=300)
    return "ready"


def build_demo() -> gr.Blocks:
    """Build the whole app. Nothing heavy happens here: models load in the background at launch."""
    # One intra-op thread per request: a small server spends its cores on concurrent users, and a
    # second thread on a busy core turns a 16 ms forward pass into seconds (see device.one_thread).
    torch.set_num_threads(settings().torch_threads)
    with gr.Blocks(title=TITLE, delete_cache=(3600, 7200)) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Images", id="images"):
            images = build_image_tab()
        with gr.Tab("Text", id="text"):
            texts = build_text_tab()
        with gr.Tab("Transfer vs meta", id="compare"):
            # The one cross-tab link: the comparison offers the classes of the tab classified last.
            build_compare_tab(image_session=images.session, text_session=texts.session)
        gr.api(wait_until_warm, api_name="warmup")
    return demo


demo = build_demo()

if __name__ == "__main__":
    start_warm_up()
    demo.queue(default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),  # also reachable inside a Space
        allowed_paths=[str(EXAMPLES_DIR.parent)],
        max_file_size="25mb",
    )
