# syntax=docker/dockerfile:1
# The image of one civicgrid service, from the repository root, with exactly the versions in uv.lock:
#   docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=grid --build-arg PORT=8102 -t civicgrid/grid:0.1.0 .
# (SERVICE: intake 8101, grid 8102, matching 8103, audit 8104). One file for the four: they differ
# only in the package and the port. The final stage holds the virtual environment and nothing else.
ARG PYTHON_IMAGE=python:3.11.14-slim

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "--build-arg SERVICE=intake|grid|matching|audit is required" >&2; exit 1; }
ENV UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir --disable-pip-version-check uv==0.13.8
WORKDIR /src
# the workspace's manifests and lock (uv resolves nothing: --frozen), then the package and what it uses
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "civicgrid-${SERVICE}"

FROM ${PYTHON_IMAGE}
ARG SERVICE
ARG PORT
RUN test -n "${PORT}" || { echo "--build-arg PORT is required" >&2; exit 1; } \
 && groupadd --system --gid 10001 civicgrid \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin civicgrid
COPY --from=build /app/.venv /app/.venv
# read-only root file system: nothing is written but /tmp (matplotlib's cache, for audit's reports)
ENV PATH=/app/.venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib SERVICE=${SERVICE} PORT=${PORT}
USER 10001:10001
EXPOSE ${PORT}
# 503 while a consumer stopped: urlopen raises, the check fails
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ['PORT'], timeout=4)"]
CMD exec "civicgrid-${SERVICE}" serve --host 0.0.0.0 --port "${PORT}"
