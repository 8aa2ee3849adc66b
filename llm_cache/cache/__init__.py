"""Storage layer: keys and bytes; knows nothing of HTTP or providers."""
