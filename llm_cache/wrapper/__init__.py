"""In-process front ends: the callable wrapper and the httpx transport."""
