# One image for every role; a Knative Service picks its role with FUNCTION_TARGET.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md main.py ./
COPY shared shared
COPY functions functions
RUN pip install --no-cache-dir . && useradd --uid 10001 dm
USER 10001
ENV PORT=8080 FUNCTION_SIGNATURE_TYPE=http
CMD ["sh", "-c", "exec functions-framework --target \"$FUNCTION_TARGET\" --source /app/main.py --port \"$PORT\""]
