"""What the proxy reports about itself: Prometheus metrics, savings, the per-request log line.

Every part subscribes to the engine's one event per exchange (``llm_cache.engine.events``);
``hub.Observability`` wires them to a proxy. The dashboard page lives in
``llm_cache.proxy.dashboard`` and reads its figures from here.
"""
