"""What a hit saved in dollars: list prices from a maintained price table (``genai-prices``).

The table is the ``genai-prices`` package (extra ``[prices]``), which tracks the providers'
published prices; we never keep prices of our own. A hit's cost is the price of the usage its
stored answer recorded, computed exactly as the provider bills that request (tiers included).

A model the table does not know -- a local model (its provider declares ``price_provider =
None``), a fine-tune, a name from a custom upstream -- costs 0 and is reported as unpriced, so
nobody mistakes "0" for "free". Without the package every cost is 0 and ``available`` says why.
The table's provider id is the provider's ``price_provider`` (its name when empty); a model the
table lacks under that provider is looked up by its name alone (a named upstream serving
another vendor's model).

Price look-ups take ~1 ms; a hit replays the same usage each time, so results are memoized on
(provider, model, input, output) and a repeated hit costs a dict look-up.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

__all__ = ["PriceTable", "price_table"]

logger = logging.getLogger("llm_cache.savings")

INSTALL_HINT = "pip install 'llm-caching[prices]' (Python >= 3.11) for cost figures"


class PriceTable:
    """``cost(provider, model, usage)`` in USD, or ``None`` when the model has no known price."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self._calc: Any = None
        self._usage_type: Any = None
        self.error: str | None = None
        self.unpriced: set[tuple[str, str]] = set()

    def load(self) -> bool:
        """Import the table (about a second, once); ``False`` when the package is missing."""
        with self._lock:
            if not self._loaded:
                self._loaded = True
                try:
                    from genai_prices import Usage, calc_price
                except ImportError:
                    self.error = f"genai-prices is not installed: {INSTALL_HINT}"
                    logger.info("cost saved counts 0: %s", self.error)
                else:
                    self._calc, self._usage_type = calc_price, Usage
        return self._calc is not None

    @property
    def available(self) -> bool:
        return self.load()

    def cost(self, provider: str, model: str, usage: dict[str, int] | None) -> float | None:
        """USD list price of ``usage`` on ``model``; ``None`` when unknown (counted as 0)."""
        if not usage or not model:
            return None if not model else 0.0
        tokens_in, tokens_out = int(usage.get("input", 0)), int(usage.get("output", 0))
        result = self._cost(provider, model, tokens_in, tokens_out)
        if result is None:
            self.unpriced.add((provider, model))
        return result

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one table per process, lives as long
    def _cost(
        self, provider: str, model: str, input_tokens: int, output_tokens: int
    ) -> float | None:
        provider_id = price_provider(provider)
        if provider_id is None or not self.load():
            return None
        usage = self._usage_type(input_tokens=input_tokens, output_tokens=output_tokens)
        for kwargs in ({"provider_id": provider_id}, {}):
            try:
                return float(self._calc(usage, model, **kwargs).total_price)
            except LookupError:
                continue
            except Exception as exc:  # a bug in the table must not break a request
                logger.warning("price look-up for %s/%s failed: %s", provider, model, exc)
                return None
        return None

    def is_priced(self, provider: str, model: str) -> bool:
        """Whether ``model`` has a list price (asked with a token of each kind)."""
        return self._cost(provider, model, 1, 1) is not None

    def note(self) -> str | None:
        """What a reader of the cost figure must know, or ``None``."""
        if not self.load():
            return self.error
        if self.unpriced:
            names = ", ".join(sorted(f"{p}/{m}" for p, m in self.unpriced)[:10])
            return f"no list price known for {names}: their savings count $0"
        return None


def price_provider(name: str) -> str | None:
    """The price table's id for one of our providers (each provider module declares it);
    ``None`` for providers whose models run locally."""
    from llm_cache.providers import get_provider

    try:
        spec = get_provider(name)
    except ValueError:
        return name  # not one of ours (a test's provider): try the name as it is
    return name if spec.price_provider == "" else spec.price_provider


_TABLE: PriceTable | None = None
_TABLE_LOCK = threading.Lock()


def price_table() -> PriceTable:
    """The process's price table (shared: loading it costs a second and ~20 MB)."""
    global _TABLE
    with _TABLE_LOCK:
        if _TABLE is None:
            _TABLE = PriceTable()
        return _TABLE
