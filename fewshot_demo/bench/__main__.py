"""``python -m fewshot_demo.bench``: the benchmark command (see ``fewshot_demo.bench.cli``)."""

import sys

from fewshot_demo.bench.cli import main

sys.exit(main())
