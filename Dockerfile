# syntax=docker/dockerfile:1
# A small non-root image running `notifier serve`. Build: docker build -t notifier .
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md alembic.ini ./
COPY notifier ./notifier
COPY migrations ./migrations
COPY docs/asyncapi.yaml ./docs/asyncapi.yaml
RUN python -m venv /opt/notifier \
    && /opt/notifier/bin/pip install --no-compile . \
    && find /opt/notifier -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11-slim
LABEL org.opencontainers.image.title="notifier" \
      org.opencontainers.image.description="Live notification push service"
RUN groupadd --system --gid 10001 notifier \
    && useradd --system --uid 10001 --gid notifier --home-dir /var/lib/notifier --create-home notifier
COPY --from=build /opt/notifier /opt/notifier
ENV PATH="/opt/notifier/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NOTIFIER_DATABASE_URL="sqlite+aiosqlite:////var/lib/notifier/notifier.db"
WORKDIR /var/lib/notifier
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
# Listen on every interface inside the container: set NOTIFIER_JWT_SECRET (or
# NOTIFIER_JWT_PUBLIC_KEY) and NOTIFIER_API_KEYS, or serve refuses to start.
ENTRYPOINT ["notifier"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
