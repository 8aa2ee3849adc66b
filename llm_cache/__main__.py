"""``python -m llm_cache``: the same as the ``llm-cache`` command."""

import sys

from llm_cache.cli import main

sys.exit(main())
