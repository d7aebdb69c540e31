# histetl developer tasks. `just` alone lists them.

set dotenv-load := false

venv := ".venv/bin"

# List the targets
default:
    @just --list

# Create .venv with histetl, the dev tools and the test servers' packages
setup:
    scripts/bootstrap --dev

# Run the test suite (starts its own PostgreSQL and PGlite/TimescaleDB servers)
test *args:
    {{venv}}/pytest -q -n 2 --dist loadfile {{args}}

# Lint and type-check (ruff, ruff format --check, mypy)
lint:
    {{venv}}/ruff check histetl tests benchmarks
    {{venv}}/ruff format --check histetl tests benchmarks
    {{venv}}/mypy histetl

# Format the code
fmt:
    {{venv}}/ruff format histetl tests benchmarks
    {{venv}}/ruff check --fix histetl tests benchmarks

# Benchmarks side by side (HISTETL_BENCH_ROWS=N for a quick run); writes benchmarks/results/latest.json
bench:
    [ -x {{venv}}/python ] || scripts/bootstrap --dev
    {{venv}}/python -m benchmarks.run

# Generate sample data and load it into ./histetl.duckdb
demo:
    {{venv}}/histetl demo

# Redo docs/report-demo.png (the README's screenshot): the demo's quality page in headless Chromium
screenshot:
    rm -rf /tmp/histetl-screenshot && mkdir -p /tmp/histetl-screenshot
    cd /tmp/histetl-screenshot && {{justfile_directory()}}/{{venv}}/histetl demo --dir demo
    chromium --headless --no-sandbox --disable-gpu --no-first-run --hide-scrollbars \
        --user-data-dir=/tmp/histetl-screenshot/profile --window-size=1280,4000 \
        --screenshot={{justfile_directory()}}/docs/report-demo.png \
        file:///tmp/histetl-screenshot/demo/report.html

# Regenerate sql/002_tables.sql from histetl/schemas.py
sql:
    {{venv}}/python -m histetl.targets.postgres.schema > sql/002_tables.sql

# Start TimescaleDB in Docker (needs a Docker engine)
db-up:
    docker compose up -d --wait timescaledb

# Stop the TimescaleDB container
db-down:
    docker compose down
