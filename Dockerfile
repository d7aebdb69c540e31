# histetl with the Dask cluster and Delta Lake (lake) extras: one image for the driver, the
# scheduler and the workers, loading into PostgreSQL/TimescaleDB, DuckDB or a Delta lake on S3.
#   docker build -t histetl .
#   docker run --rm -v "$PWD/raw:/data/raw" histetl replay /data/raw --validate-only
# docker-compose.yml runs it as `dask scheduler` / `dask worker` beside TimescaleDB.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY histetl ./histetl
COPY sql ./sql
# the versions pinned in uv.lock (with hashes), then histetl itself
RUN pip install uv \
    && uv export --frozen --no-emit-project --extra cluster --extra lake -o /tmp/requirements.txt \
    && pip install --require-hashes -r /tmp/requirements.txt \
    && pip install --no-deps . \
    && pip uninstall -y uv && rm -rf /src /tmp/requirements.txt

# raw DBN files and quarantine: the same path on the driver and on every worker
RUN useradd --create-home --uid 1000 histetl \
    && mkdir -p /data/raw /data/quarantine && chown -R histetl /data
USER histetl
WORKDIR /data
ENTRYPOINT ["histetl"]
CMD ["--help"]
