"""Evaluation above the core: the benchmark, the comparison, their reports, and the pools they embed.

- ``pools``, ``builtin_pools``: labelled data embedded once per encoder (built-in sets cached on disk);
- ``benchmark``, ``cli``: every method on the same episodes of your data (``python -m fewshot_demo.bench``);
- ``comparison``, ``results``, ``compare_run``: transfer vs meta vs self-supervised on identical
  episodes, streamed as updates (the comparison tab's core);
- ``reading``, ``exports``: those results in plain language, as CSV and JSON;
- ``report``: the README's results table (``python -m fewshot_demo.bench.report``);
- ``text_peers``: our text methods next to scikit-learn and SetFit (``python -m fewshot_demo.bench.text_peers``).

Nothing is imported here: each module is imported by its own name.
"""
