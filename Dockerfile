# poulpe in a container: docker build -t poulpe . && docker run -p 8000:8000 -v poulpe-data:/data poulpe
# BASE is any Debian bookworm with python3 and its venv module: scripts/check_image.sh builds on a debootstrap one.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# /data holds the SQLite store and the dead letters; it belongs to the unprivileged user.
RUN groupadd --system --gid 10001 poulpe \
    && useradd --system --create-home --uid 10001 --gid poulpe poulpe \
    && mkdir /data \
    && chown poulpe:poulpe /data

# A venv, not the system python: Debian's python3 refuses system-wide pip installs (PEP 668),
# and the slim image's python is at /usr/local/bin rather than /usr/bin: python3 on PATH is either.
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
# The dependencies at the versions CI was green with (./scripts/lock.sh makes the lock), in a layer of their own
# that a change to poulpe's code does not rebuild; then poulpe itself, resolving nothing again.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY poulpe/ poulpe/
RUN pip install --no-cache-dir --no-deps .

# The user poulpe, by number: Kubernetes' runAsNonRoot can only check a numeric user.
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000

# No curl in the slim image: python's urllib asks /health (503 when the store does not
# answer). Without proxies, so an HTTP_PROXY meant for jobs does not catch this call.
# POULPE_PORT, read by poulpe too, is the way to move the port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/health' % os.environ.get('POULPE_PORT', '8000'), timeout=4)"]

# Flags after the image name are added to these: docker run poulpe --workers 16
ENTRYPOINT ["poulpe", "--host", "0.0.0.0", "--data", "/data/poulpe.db", "--dead", "/data/deadpool"]
