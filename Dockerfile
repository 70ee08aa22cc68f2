# syntax=docker/dockerfile:1
# One image for every role; a Knative Service picks its role with FUNCTION_TARGET.
#
# The base is an exact tag (Python 3.12.12 on Debian 12); for reproducible builds pin its
# digest as well: PYTHON_IMAGE=python:3.12.12-slim-bookworm@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.12.12-slim-bookworm

# --- build: the project and every dependency as wheels ---------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md main.py ./
COPY shared shared
COPY functions functions
RUN pip wheel --wheel-dir /wheels .

# --- run: the wheels installed, nothing to build with, a user that is not root ----------------
FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# The wheels are mounted for the install only, so they are in no layer of this image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels dm-knative \
    && groupadd --gid 1001 dm \
    && useradd --uid 1001 --gid 1001 --no-create-home --home-dir /app --shell /usr/sbin/nologin dm \
    && install -d -o 1001 -g 1001 /app
WORKDIR /app
# 1001:1001 as the instance pods (shared/launchers/pods.py), so both can write the project
# files on the shared volume; numeric, so runAsNonRoot can check it.
USER 1001:1001
# MALLOC_ARENA_MAX: a server thread does not keep the memory of its largest request (see shared/stack.py)
ENV PORT=8080 FUNCTION_SIGNATURE_TYPE=http MALLOC_ARENA_MAX=2
EXPOSE 8080
# functions-framework's app for FUNCTION_TARGET on PORT, served by shared/http_server.py (THREADS threads):
# slow or idle clients hold a socket, never a thread, and are cut off at deadlines (DM_HTTP_*).
CMD ["python", "-m", "shared.stack"]
