"""Simulated upstreams for the providers beyond OpenAI and Anthropic, one module each.

Each speaks its provider's exact wire format (checked against the provider's official SDK in
``tests/fake_providers/test_*.py``) with the knobs of ``tests/fake_providers/_base.py``.
"""
