# llm-cache proxy image.
#
#   docker build -t llm-cache .                          # on python:3.12-slim
#   docker run -p 127.0.0.1:8000:8000 -v llm-cache-data:/data llm-cache
#
# Three stages: `deps` builds a virtualenv with the dependencies (rebuilt only when
# pyproject.toml changes), `build` makes the project's wheel, and the final stage copies the
# virtualenv and installs the wheel on a clean base: no compiler, pip cache or source tree
# ships, and a source change rebuilds only the small last layers.
# BASE_IMAGE lets hosts without an image registry build on a local stand-in (see README).
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS deps
# Package index and proxy of the build host, if any (used by pip at build time only; the final
# stage does not declare them, so they are not kept).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG EXTRAS=redis,cli
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/llm-cache
COPY pyproject.toml ./
# The dependencies, through a stub of the package (README.md is a placeholder here).
RUN mkdir llm_cache && touch llm_cache/__init__.py README.md \
 && /opt/llm-cache/bin/pip install --quiet ".[${EXTRAS}]" "setuptools>=68" wheel \
 && /opt/llm-cache/bin/pip uninstall --quiet --yes llm-caching \
 && rm -rf llm_cache build *.egg-info README.md

FROM deps AS build
COPY README.md ./
COPY llm_cache ./llm_cache
RUN /opt/llm-cache/bin/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir /wheels .

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="llm-cache" \
      org.opencontainers.image.description="Caching proxy for LLM API calls (OpenAI, Anthropic, OpenAI-compatible)"
# An unprivileged user that owns only the data volume.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin llmcache \
 && mkdir -p /data && chown llmcache:llmcache /data
COPY --from=deps /opt/llm-cache /opt/llm-cache
COPY --from=build /wheels /tmp/wheels
RUN /opt/llm-cache/bin/pip install --quiet --no-deps --no-compile /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && /opt/llm-cache/bin/python -c "import llm_cache.proxy.server, redis"
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
