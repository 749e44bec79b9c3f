"""fewshot-demo: few-shot image and text classification, meta-learning next to transfer learning.

Run with `python app.py`; on Hugging Face Spaces this file is the entry point.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr

from fewshot_demo.ui.image_tab import EXAMPLES_DIR, build_image_tab

TITLE = "Few-shot learning demo"
INTRO = """# Few-shot learning demo
Teach a classifier new classes from a handful of examples. Everything runs on this machine with
bundled pretrained weights: EfficientNet-Lite0 (ImageNet) for images.
"""


def build_demo() -> gr.Blocks:
    """Build the whole app. Nothing heavy happens here: models load on first use."""
    with gr.Blocks(title=TITLE, delete_cache=(3600, 7200)) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Images", id="images"):
            build_image_tab()
    return demo


demo = build_demo()

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        allowed_paths=[str(EXAMPLES_DIR)],
        max_file_size="25mb",
    )
