"""Operator tools behind ``llm-cache export / import / warm / ls / show / rm / prune``.

``commands`` (the Click commands) and ``shell`` (their plumbing) are the command line; the
other modules do one job each and know nothing of it: ``files`` opens JSON Lines files (plain,
``.gz``, ``.zst``, stdin/stdout), ``records`` turns stored entries into export records and
back, ``transfer`` exports and imports, ``warm`` loads OpenAI Batch API results, ``inspect``
lists, finds and prunes, ``progress`` draws a progress bar on a terminal, ``durations`` reads
``7d`` / ``12h`` / ``90s``.
"""
