# histetl with the Dask cluster extra: one image for the driver, the scheduler and the workers.
#   docker build -t histetl .
#   docker run --rm -v "$PWD/raw:/data/raw" histetl replay /data/raw --validate-only
# docker-compose.yml runs it as `dask scheduler` / `dask worker` beside TimescaleDB.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY histetl ./histetl
COPY sql ./sql
RUN pip install ".[cluster]" && rm -rf /src

# raw DBN files and quarantine: the same path on the driver and on every worker
RUN useradd --create-home --uid 1000 histetl \
    && mkdir -p /data/raw /data/quarantine && chown -R histetl /data
USER histetl
WORKDIR /data
ENTRYPOINT ["histetl"]
CMD ["--help"]
