"""Operator tools behind ``llm-cache export / import / warm / ls / show / rm / prune``.

Each module does one job and knows nothing of the command line (``llm_cache.cli`` parses
arguments and prints): ``files`` opens JSON Lines files (plain, ``.gz``, ``.zst``, stdin/stdout),
``records`` turns stored entries into export records and back, ``transfer`` exports and imports,
``warm`` loads OpenAI Batch API results, ``inspect`` lists, shows and prunes, ``progress`` draws a
progress bar on a terminal, ``durations`` reads ``7d`` / ``12h`` / ``90s``.
"""
