# llm-cache proxy image.
#
#   docker build -t llm-cache .                          # on python:3.12-slim
#   docker run -p 127.0.0.1:8000:8000 -v llm-cache-data:/data llm-cache
#
# Two stages: the first builds a virtualenv with the project and its Redis extra, the second
# copies only that virtualenv onto a clean base, so no compiler, pip cache or source tree ships.
# BASE_IMAGE lets hosts without an image registry build on a local stand-in (see README).
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
# Package index and proxy of the build host, if any (used by pip at build time only; not kept:
# the final stage does not declare them).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG EXTRAS=redis,cli
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/llm-cache
# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN mkdir llm_cache && touch llm_cache/__init__.py \
 && /opt/llm-cache/bin/pip install --quiet ".[${EXTRAS}]" \
 && /opt/llm-cache/bin/pip uninstall --quiet --yes llm-caching \
 && rm -rf llm_cache build *.egg-info
COPY llm_cache ./llm_cache
RUN /opt/llm-cache/bin/pip install --quiet --no-deps . \
 && /opt/llm-cache/bin/python -c "import llm_cache.proxy.server, redis"

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="llm-cache" \
      org.opencontainers.image.description="Caching proxy for LLM API calls (OpenAI, Anthropic, OpenAI-compatible)"
# An unprivileged user that owns only the data volume.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin llmcache \
 && mkdir -p /data && chown llmcache:llmcache /data
COPY --from=build /opt/llm-cache /opt/llm-cache
ENV PATH=/opt/llm-cache/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LLM_CACHE_PROXY_HOST=0.0.0.0 \
    LLM_CACHE_PROXY_PORT=8000 \
    LLM_CACHE_SQLITE_PATH=/data/llm_cache.db
USER llmcache
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# Healthy when /health answers "healthy" (a failing backend makes it "degraded": unhealthy here,
# though the proxy still serves through the upstream).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import json, os, sys, urllib.request as u; port = os.environ.get('LLM_CACHE_PROXY_PORT', '8000'); body = json.load(u.urlopen(f'http://127.0.0.1:{port}/health', timeout=2)); sys.exit(body.get('status') != 'healthy')"]
CMD ["llm-cache", "serve"]
