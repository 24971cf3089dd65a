# Worker image for docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY state state
COPY ltv ltv
RUN pip install --no-cache-dir .
USER nobody
CMD ["ltv", "worker"]
