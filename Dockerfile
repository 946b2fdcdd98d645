# syntax=docker/dockerfile:1.7
# One image for every Doable role; the command picks it:
#   doable serve            (API: ChatKit, MCP, REST)
#   doable worker reminders|notifications|recurrence|audit
# Multi-arch (linux/amd64, linux/arm64): every dependency installs from wheels,
# so neither stage needs a compiler.

ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, pinned by constraints.txt and from wheels only, so a
# source change reuses this layer.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write(chr(10).join(deps))" \
 && pip install --only-binary=:all: -c constraints.txt -r /tmp/requirements.txt
COPY . .
RUN pip install --no-deps -c constraints.txt . \
 && pip check

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.0.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="doable" \
      org.opencontainers.image.description="Doable: AI-chat-first task manager (API and workers)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    DOABLE_DATA_DIR=/data
# Numeric, non-root user. The root filesystem can be read-only: the only
# writable paths are /tmp and /data (emptyDirs in Kubernetes).
RUN groupadd --system --gid 10001 doable \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /data \
      --shell /usr/sbin/nologin doable \
 && mkdir -p /data \
 && chown 10001:10001 /data
COPY --from=builder /opt/venv /opt/venv
WORKDIR /data
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["doable"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
