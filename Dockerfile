# One image for the four services; the compose file picks the service by command.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependency layer: rebuilt only when the lock file changes.
COPY requirements.runtime.lock ./
RUN pip install -r requirements.runtime.lock

COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-deps . && useradd --system --uid 10001 --home /app refuge
USER refuge
EXPOSE 8000
CMD ["python", "-m", "shared.serve", "intake"]
