"""The support-set editor the image and text tabs share, and the handlers behind it.

A tab is a ``SupportModality`` (``modality``: what a class row holds, how a support set is fitted and
queries are read) plus the widget built here (``widgets``, wired by ``wiring``): class rows (a name
and items, with a count) with add, remove and clear (``rows``), Classify (``classify``), the
self-check (leave-one-out) and 2-D map panel, and the panel that takes the fitted classifier
elsewhere: save/load, an ONNX export where the modality has one, the Hugging Face Hub (``panels``).

Everything shown about a fit goes stale when the classes change: an edit of the class rows clears
the results, the self-check and the exports, and says so in the status; a Classify that refits
clears the self-check and exports of the previous fit.

Handlers are module-level functions over a ``SupportSession`` (``session``: the value of the tab's
``gr.State``), so they can be called without a server; the builders only create components and
wire events.
"""
