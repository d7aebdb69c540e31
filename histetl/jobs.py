"""Job files: what to fetch from the Databento Historical API, and the plan of chunks.

A job file names the API key's environment variable, where raw DBN files go, the target
database and a list of jobs (dataset, schemas, symbols, date range, chunk size, budget). It is
validated as a whole before any work: an error names the YAML path of the bad key
(`jobs[0].schema: ...`) and exits 2.

Dates are UTC. `start` is inclusive and `end` exclusive, as in the Databento API. Either may be
a date, a datetime, or a relative form resolved when the job runs: `today`, `yesterday`,
`today-3d`, `today-2w`, `today+1d` (so a daily cron job `start: today-3d, end: today` fetches
the last three complete days). A job's range is cut into chunks at UTC midnights, `chunk_days`
days each; a chunk is the unit that is downloaded, verified, kept and loaded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from histetl import objstore
from histetl.config import DB_ENV_VAR, DEFAULT_DB, load_model
from histetl.dbn import SUPPORTED_SCHEMAS
from histetl.errors import ConfigError
from histetl.targets import file_path

DEFAULT_KEY_ENV_VAR = "DATABENTO_API_KEY"
ALL_SYMBOLS = "ALL_SYMBOLS"
MAX_SYMBOLS = 2000  # per request, the API's limit
STYPES = ("raw_symbol", "parent", "continuous", "instrument_id")
STYPE_OUT = "instrument_id"
RawDir = Path | str  # a `run` job's raw_dir: a local folder, or an s3:// URL

STypeIn = Literal["raw_symbol", "parent", "continuous", "instrument_id"]
DateSpec = dt.datetime | dt.date | str

_RELATIVE = re.compile(r"^(today|yesterday)(?:\s*([+-])\s*(\d+)\s*([dw]))?$")
_CONTINUOUS = re.compile(r"^[^.\s]+\.[cnv]\.\d+$")
_PARENT = re.compile(r"^[^.\s]+\.[A-Z]+$")
_PARENT_SUFFIXES = (".FUT", ".OPT")
_DAY = dt.timedelta(days=1)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySettings(_Model):
    """Retries of 429, 5xx, connection errors and incomplete downloads."""

    max_attempts: int = Field(default=5, ge=1, le=100)
    max_wait_s: float = Field(default=60.0, gt=0, le=3600)


class DatabentoSettings(_Model):
    key_env_var: str = Field(default=DEFAULT_KEY_ENV_VAR, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    gateway: str | None = None
    # the longest the API may take to accept a connection, or stay silent within a response
    # (a long download that keeps streaming is never cut); then the request is retried
    timeout_s: float = Field(default=100.0, gt=0, le=3600)
    retry: RetrySettings = Field(default_factory=RetrySettings)

    @field_validator("key_env_var")
    @classmethod
    def _not_a_key(cls, value: str) -> str:
        if value.startswith("db-") and len(value) > 20:
            # Never echo the value: it is probably the key itself.
            raise ValueError(
                "this looks like an API key; put the key in an environment variable and give "
                "the variable's name here"
            )
        return value

    @field_validator("gateway")
    @classmethod
    def _gateway_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be a URL such as https://hist.databento.com")
        return value.rstrip("/") if value else None


class JobSpec(_Model):
    """One job: one dataset, one or more schemas, one symbol list, one date range."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    dataset: str = Field(pattern=r"^[A-Z0-9]+\.[A-Z0-9]+$")
    schema_: str | None = Field(default=None, alias="schema")
    schemas: tuple[str, ...] | None = Field(default=None, min_length=1)
    symbols: tuple[str, ...] = Field(min_length=1, max_length=MAX_SYMBOLS)
    stype_in: STypeIn = "raw_symbol"
    start: DateSpec
    end: DateSpec
    chunk_days: int = Field(default=1, ge=1, le=366)
    max_cost_usd: float | None = Field(default=None, ge=0)

    @field_validator("schema_")
    @classmethod
    def _one_schema(cls, value: str | None) -> str | None:
        return None if value is None else _check_schema(value)

    @field_validator("schemas")
    @classmethod
    def _many_schemas(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        checked = tuple(_check_schema(s) for s in value)
        if len(set(checked)) != len(checked):
            raise ValueError("a schema is listed twice")
        return checked

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbol_list(cls, value: Any) -> Any:
        if isinstance(value, str | int):
            value = [value]
        if isinstance(value, list | tuple):
            return [str(v).strip() if isinstance(v, str | int) else v for v in value]
        return value

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date_spec(cls, value: Any) -> Any:
        if isinstance(value, str):
            parse_date_spec(value)  # syntax check now; relative forms resolve at run time
            return value.strip()
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        if (self.schema_ is None) == (self.schemas is None):
            raise ValueError("give either `schema` or `schemas` (a list), exactly one of them")
        _check_symbols(self.symbols, self.stype_in)
        if not (_is_relative(self.start) or _is_relative(self.end)):
            start, end = self.window(dt.date(1970, 1, 1))
            if start >= end:
                raise ValueError(f"start {start.isoformat()} is not before end {end.isoformat()}")
        return self

    @property
    def schema_list(self) -> tuple[str, ...]:
        return self.schemas if self.schemas is not None else (self.schema_ or "",)

    def window(self, today: dt.date | None = None) -> tuple[dt.datetime, dt.datetime]:
        """[start, end) in UTC, relative forms resolved against `today` (default: UTC today)."""
        today = today or utc_today()
        return resolve_date(self.start, today), resolve_date(self.end, today)


class JobFile(_Model):
    databento: DatabentoSettings = Field(default_factory=DatabentoSettings)
    raw_dir: RawDir = Path("raw")
    db: str | None = None
    quarantine_dir: Path = Path("quarantine")
    on_invalid: Literal["quarantine", "fail"] = "quarantine"
    rules: tuple[Path, ...] = ()
    mapping: Path | None = None
    cluster: str | None = None
    jobs: list[JobSpec] = Field(min_length=1)

    @field_validator("db")
    @classmethod
    def _db_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(
            r"^(duckdb|delta|delta\+s3|postgres|postgresql)://", value
        ):
            raise ValueError(
                "use duckdb:///path.duckdb, delta:///path/to/lake, delta+s3://bucket/prefix or "
                "postgresql://user@host/db"
            )
        return value

    @field_validator("raw_dir", mode="before")
    @classmethod
    def _raw_dir(cls, value: object) -> object:
        """A local folder (a Path), or an s3:// URL (a str, checked by histetl.objstore)."""
        if not isinstance(value, str):
            return value
        if objstore.is_s3(value):
            try:
                return objstore.check_url(value, "raw_dir")
            except ConfigError as exc:
                raise ValueError(f"{exc.what}; {exc.hint}") from None
        scheme = re.match(r"^([a-z][a-z0-9+.-]*)://", value, re.I)
        if scheme:
            raise ValueError(
                f"{scheme[1]}:// is not supported: raw_dir is a local folder or s3://bucket/prefix"
            )
        return Path(value)

    @field_validator("cluster")
    @classmethod
    def _cluster_uri(cls, value: str | None) -> str | None:
        if value is not None:
            from histetl.pipeline.cluster import parse_cluster_uri

            try:
                parse_cluster_uri(value)
            except ConfigError as exc:
                raise ValueError(f"{exc.what}; use {exc.hint}") from None
        return value

    @field_validator("jobs")
    @classmethod
    def _unique_names(cls, jobs: list[JobSpec]) -> list[JobSpec]:
        names = [j.name for j in jobs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"job names must be unique; repeated: {', '.join(twice)}")
        return jobs

    def select(self, names: tuple[str, ...] | list[str] = ()) -> list[JobSpec]:
        """The jobs named (all when none are), in file order."""
        known = {j.name for j in self.jobs}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"no job named {', '.join(map(repr, unknown))}",
                where="--job",
                hint=f"jobs in this file: {', '.join(j.name for j in self.jobs)}",
            )
        return [j for j in self.jobs if not names or j.name in names]

    def target_db(self, override: str | None = None) -> str:
        """--db, else $HISTETL_DB, else the file's `db`, else ./histetl.duckdb."""
        return override or os.environ.get(DB_ENV_VAR) or self.db or DEFAULT_DB


class _JobLoader(yaml.SafeLoader):
    """YAML without implicit timestamps: `start: 2024-13-45` stays text, so the job model
    parses it and names its YAML path (`jobs[0].start`) instead of PyYAML raising."""


_JobLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_job_file(path: Path) -> JobFile:
    """Read and validate a job file; relative paths in it resolve against its directory."""
    job_file = load_model(JobFile, path, _JobLoader)
    return _anchor(job_file, path.resolve().parent)


def _anchor(job_file: JobFile, base: Path) -> JobFile:
    def at(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    raw_dir = job_file.raw_dir
    db = job_file.db
    path = file_path(db) if db is not None else None
    if db is not None and path is not None and path != ":memory:":  # relative: the job file's
        db = f"{db.partition(':')[0]}:///{at(Path(path))}"
    return job_file.model_copy(
        update={
            "raw_dir": at(raw_dir) if isinstance(raw_dir, Path) else raw_dir,  # or s3://
            "quarantine_dir": at(job_file.quarantine_dir),
            "rules": tuple(at(p) for p in job_file.rules),
            "mapping": at(job_file.mapping) if job_file.mapping is not None else None,
            "db": db,
        }
    )


# -- dates ------------------------------------------------------------------------------------


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _is_relative(spec: DateSpec) -> bool:
    return isinstance(spec, str) and _RELATIVE.match(spec.strip().lower()) is not None


def parse_date_spec(text: str) -> DateSpec:
    """A relative form (kept as text), or an ISO date / datetime."""
    value = text.strip()
    if _RELATIVE.match(value.lower()):
        return value
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value)
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date: use YYYY-MM-DD, an ISO datetime "
            "(2023-12-14T14:30:00Z), today, yesterday or today-Nd / today-Nw"
        ) from None


def resolve_date(spec: DateSpec, today: dt.date) -> dt.datetime:
    """A date spec as a UTC datetime (a date is its midnight; a naive datetime is UTC)."""
    if isinstance(spec, str):
        parsed = parse_date_spec(spec)
        if isinstance(parsed, str):
            match = _RELATIVE.match(parsed.lower())
            assert match is not None
            anchor, sign, count, unit = match.groups()
            day = today - _DAY if anchor == "yesterday" else today
            if count:
                delta = int(count) * (7 if unit == "w" else 1)
                day += dt.timedelta(days=delta if sign == "+" else -delta)
            parsed = day
        spec = parsed
    if isinstance(spec, dt.datetime):
        return spec.replace(tzinfo=dt.UTC) if spec.tzinfo is None else spec.astimezone(dt.UTC)
    return dt.datetime(spec.year, spec.month, spec.day, tzinfo=dt.UTC)


# -- validation helpers -----------------------------------------------------------------------


def _check_schema(value: str) -> str:
    if value not in SUPPORTED_SCHEMAS:
        raise ValueError(f"unknown schema {value!r}; supported: {', '.join(SUPPORTED_SCHEMAS)}")
    return value


def _check_symbols(symbols: tuple[str, ...], stype_in: str) -> None:
    if ALL_SYMBOLS in symbols:
        if len(symbols) > 1:
            raise ValueError(f"{ALL_SYMBOLS} cannot be combined with other symbols")
        return
    for symbol in symbols:
        if not symbol:
            raise ValueError("empty symbol")
        if stype_in == "continuous" and not _CONTINUOUS.match(symbol):
            raise ValueError(
                f"symbol {symbol!r} is not continuous (ROOT.c.N, ROOT.n.N or ROOT.v.N, "
                "e.g. ES.c.0); set stype_in to match the symbols"
            )
        if stype_in == "parent" and not _PARENT.match(symbol):
            raise ValueError(
                f"symbol {symbol!r} is not a parent symbol (ROOT.ASSET, e.g. ES.FUT or ES.OPT)"
            )
        if stype_in == "instrument_id" and not symbol.isdigit():
            raise ValueError(f"symbol {symbol!r} is not an instrument id (an integer)")
        if stype_in == "raw_symbol":
            if _CONTINUOUS.match(symbol):
                raise ValueError(f"symbol {symbol!r} is continuous: set stype_in: continuous")
            if symbol.endswith(_PARENT_SUFFIXES):
                raise ValueError(f"symbol {symbol!r} is a parent symbol: set stype_in: parent")


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One request: a job's schema over [start, end). Knows its place under raw_dir."""

    job: str
    dataset: str
    schema: str
    symbols: tuple[str, ...]
    stype_in: str
    start: dt.datetime
    end: dt.datetime

    def request(self) -> dict[str, Any]:
        """The request parameters, as sent to the API and recorded in the manifest."""
        return {
            "dataset": self.dataset,
            "schema": self.schema,
            "symbols": list(self.symbols),
            "stype_in": self.stype_in,
            "stype_out": STYPE_OUT,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }

    @property
    def key(self) -> str:
        """A short digest of the request: a changed symbol list is a different chunk."""
        request = {**self.request(), "symbols": sorted(self.symbols)}
        text = json.dumps(request, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    @property
    def relpath(self) -> Path:
        """<dataset>/<schema>/<job>/<start>_<end>.<key>.dbn.zst"""
        name = f"{_stamp(self.start)}_{_stamp(self.end)}.{self.key}.dbn.zst"
        return Path(self.dataset, self.schema, self.job, name)

    @property
    def label(self) -> str:
        return f"{self.job} {self.schema} {_stamp(self.start)}..{_stamp(self.end)}"


def _stamp(ts: dt.datetime) -> str:
    if ts.time() == dt.time(0) and ts.tzinfo is not None:
        return ts.date().isoformat()
    return ts.strftime("%Y-%m-%dT%H%M%SZ")


def plan_chunks(job: JobSpec, today: dt.date | None = None) -> list[Chunk]:
    """The job's chunks, schema by schema, cut at UTC midnights every `chunk_days` days."""
    start, end = job.window(today)
    if start >= end:
        raise ConfigError(
            f"start {start.isoformat()} is not before end {end.isoformat()}",
            where=f"job {job.name}",
            hint="check start and end (relative forms resolve against today, UTC)",
        )
    bounds = [start]
    edge = dt.datetime.combine(start.date(), dt.time(0), dt.UTC)
    while True:
        edge += job.chunk_days * _DAY
        if edge >= end:
            break
        bounds.append(edge)
    bounds.append(end)
    return [
        Chunk(job.name, job.dataset, schema, job.symbols, job.stype_in, a, b)
        for schema in job.schema_list
        for a, b in itertools.pairwise(bounds)
    ]
