# The help desk bot: one image for `helpdesk serve` (replicas) and `helpdesk worker` (outbox).
# Build: docker build -t helpdesk .   Run: see deploy/compose.yaml and docs/deploy.md.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# An unprivileged user owns nothing but the data folder.
RUN groupadd --system --gid 10001 helpdesk \
 && useradd --system --uid 10001 --gid helpdesk --home-dir /app --shell /usr/sbin/nologin helpdesk \
 && mkdir -p /data && chown helpdesk:helpdesk /data

WORKDIR /app
# Dependencies first (cached while only code changes), exactly the versions in the lock.
COPY pyproject.toml requirements.lock README.md ./
COPY bot/__init__.py bot/__init__.py
RUN python -m venv "$VIRTUAL_ENV" \
 && pip install -c requirements.lock -e . \
 && rm -rf /root/.cache

# The code and the data that ship with it: settings defaults, flows, knowledge base. The package is
# installed in place (-e) so relative paths in settings resolve against /app.
COPY bot bot
COPY config config
COPY flows flows
COPY kb_articles kb_articles
RUN pip install --no-deps -e . && python -m compileall -q bot

ENV HELPDESK_APP__DATA_DIR=/data \
    HELPDESK_SERVER__HOST=0.0.0.0 \
    HELPDESK_SERVER__PORT=3000 \
    HELPDESK_LOG__FORMAT=json

USER helpdesk:helpdesk
EXPOSE 3000

# Liveness only (no database): the load balancer uses GET /readyz for readiness.
HEALTHCHECK --interval=15s --timeout=4s --start-period=90s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HELPDESK_SERVER__PORT', '3000'), timeout=3)"]

ENTRYPOINT ["helpdesk"]
CMD ["serve"]
