# One image for every role; a Knative Service picks its role with FUNCTION_TARGET.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md main.py ./
COPY shared shared
COPY functions functions
RUN pip install --no-cache-dir . && useradd --uid 10001 dm
USER 10001
# MALLOC_ARENA_MAX: a server thread does not keep the memory of its largest request (see shared/stack.py)
ENV PORT=8080 FUNCTION_SIGNATURE_TYPE=http MALLOC_ARENA_MAX=2
# functions-framework's app for FUNCTION_TARGET on PORT, served by shared/http_server.py (THREADS threads):
# slow or idle clients hold a socket, never a thread, and are cut off at deadlines (DM_HTTP_*).
CMD ["python", "-m", "shared.stack"]
