# poulpe in a container: docker build -t poulpe . && docker run -p 8000:8000 -v poulpe-data:/data poulpe
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# /data holds the SQLite store and the dead letters; it belongs to the unprivileged user.
RUN groupadd --system --gid 10001 poulpe \
    && useradd --system --create-home --uid 10001 --gid poulpe poulpe \
    && mkdir /data \
    && chown poulpe:poulpe /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY poulpe/ poulpe/
# Installs from the local copy: the dependencies' bounds live in pyproject.toml.
RUN pip install --no-cache-dir .

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
