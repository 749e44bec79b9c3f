"""The page's CSS: page-wide rules the tabs add once, and the rules the prediction cards carry."""

from __future__ import annotations

import gradio as gr

#: Page-wide rules the tabs add once (``page_style``): compact thumbnail galleries in the class rows
#: (their own clear-all button hidden: "Remove class" and "Clear all" do that, and every image has
#: its own delete button), no "Error" badge over a status line that already says what went wrong,
#: and nothing wider than a phone's screen.
PAGE_CSS = """
.fs-class-gallery button[aria-label="Clear"], .fs-class-gallery button[aria-label="Download All"] {display:none}
.fs-class-gallery .thumbnail-item {min-width:0}
.fs-style {display:none !important}
.fs-confusion table {font-size:.85em}
.fs-map img, .fs-map canvas {max-width:100%; height:auto}
.fs-examples .grid-wrap {height:auto !important}
.fs-status > [data-testid="status-tracker"]:has(.error) {display:none !important}
@media (max-width: 640px) {
  .fs-class-row {flex-wrap:wrap}
  .fs-examples .grid-container {--grid-cols: 2 !important}
}
"""


def page_style() -> gr.HTML:
    """The page-wide rules of ``PAGE_CSS``, as an invisible block (add it once per tab)."""
    return gr.HTML(f"<style>{PAGE_CSS}</style>", elem_classes=["fs-style"], padding=False, container=False)


#: The prediction cards' rules, sent with the cards (``cards.prediction_cards_html``).
CARD_CSS = """
<style>
.fs-cards{display:flex;flex-direction:column;gap:10px;max-width:100%}
.fs-card{border:1px solid #d0d7de;border-radius:8px;padding:10px;display:flex;gap:14px;flex-wrap:wrap;
  box-sizing:border-box;max-width:100%;min-width:0}
.fs-card>div{min-width:0;flex:1 1 200px}
.fs-card>img{flex:0 0 auto}
.fs-card.fs-right{border-color:#1a7f37;border-width:2px}
.fs-card.fs-wrong{border-color:#cf222e;border-width:2px;background:#fff8f8}
.fs-card img{border-radius:4px;object-fit:contain;background:#fff}
.fs-label{font-size:1.2em;font-weight:600;overflow-wrap:anywhere}
.fs-mark{display:inline-block;font-size:.8em;font-weight:600;border-radius:10px;padding:1px 8px;margin-left:6px;vertical-align:middle}
.fs-right .fs-mark{background:#dafbe1;color:#1a7f37}
.fs-wrong .fs-mark{background:#ffebe9;color:#cf222e}
.fs-hint{font-size:.85em;color:#57606a;margin-top:4px}
.fs-row{display:flex;align-items:center;gap:6px;font-size:.9em;min-width:0}
.fs-row span.n{flex:0 1 110px;min-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.fs-track{flex:1 1 60px;max-width:160px;min-width:30px}
.fs-bar{height:10px;background:#2f81f7;border-radius:3px}
.fs-row span.p{flex:0 0 auto}
.fs-nearest{display:flex;gap:6px;flex-wrap:wrap}
.fs-nearest figure{margin:0;text-align:center;font-size:.8em;max-width:90px;overflow-wrap:anywhere}
.fs-small{color:#57606a;font-size:.85em;overflow-wrap:anywhere}
.fs-summary{font-weight:600;margin:4px 0}
</style>
"""

#: The heat maps' rules on a prediction card (``cards.looked_html``): the veil lies on the picture.
HEAT_CSS = """
<style>
.fs-card>div.fs-looked{flex:0 1 230px}
.fs-heat{position:relative;display:inline-block;vertical-align:top}
.fs-heat img{position:absolute;left:0;top:0;width:100%;height:100%}
.fs-heat img.fs-veil{background:transparent;border-radius:4px}
</style>
"""
