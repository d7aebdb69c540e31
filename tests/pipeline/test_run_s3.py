"""`run` jobs with `raw_dir: s3://bucket/prefix` (the session's moto server on 127.0.0.1, the
real databento client against the fake gateway): each chunk is downloaded to a local `.part`,
verified, uploaded, and only then recorded in its manifest object; the files are loaded back
from S3, so `histetl replay s3://...` on a fresh database gives the same tables; reruns, a
refused upload, a kill between upload and manifest, and the job lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import duckdb
import numpy as np
import pytest
from click.testing import CliRunner

from histetl import objstore
from histetl.cli import main
from histetl.errors import ConfigError
from histetl.faults import FAULT_ENV
from histetl.jobs import load_job_file, plan_chunks
from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.source.databento.download import local_dir
from histetl.source.databento.lock import JobLock, LockBusyError
from histetl.source.databento.plan import local_plans
from histetl.source.files import expand_paths
from tests.pipeline.test_run import (
    N_TRADES,
    db_trades,
    gateway,
    gw,
    run,
    served,
    trades,
    write_job,
)
from tests.support.fake_gateway import FakeGateway
from tests.support.pgserver import free_port
from tests.support.s3server import REGION, SECRET_KEY, S3Server, start_s3

__all__ = ["gateway", "gw", "trades"]  # fixtures, imported to be registered here


@pytest.fixture
def s3env(s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The AWS_* variables point at the session's S3 server; the state folder (where the locks
    and downloads of an s3:// raw_dir go) is tmp_path/state."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(objstore, "_FILESYSTEMS", {})  # made afresh from these variables
    return s3_server


def s3_job(tmp_path: Path, gw: FakeGateway, raw_dir: str) -> Path:
    path = write_job(tmp_path, gw)
    path.write_text(path.read_text().replace("raw_dir: raw\n", f"raw_dir: {raw_dir}\n"))
    return path


def objects(server: S3Server, bucket: str, client: Any = None) -> dict[str, Any]:
    """Every object of the bucket: key -> (size, last modified)."""
    listing = (client or server.client()).list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: (o["Size"], o["LastModified"]) for o in listing}


def local_files(tmp_path: Path) -> list[Path]:
    """What a run left on local disk besides the lock files: nothing."""
    return sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".part", ".zst"))


def test_run_into_s3_loads_what_a_local_run_loads_keeps_manifests_there_and_reruns_do_nothing(
    gw: FakeGateway, s3env: S3Server, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    assert run(write_job(local, gw)).error is None
    bucket = s3env.bucket()
    path = s3_job(tmp_path, gw, f"s3://{bucket}/raw/")

    result = run(path)

    assert result.error is None
    assert [c.status for c in result.downloaded] == ["downloaded"] * 3
    assert result.report is not None
    assert result.report.totals["loaded"] == N_TRADES
    chunks = plan_chunks(load_job_file(path).jobs[0])
    urls = [f"s3://{bucket}/raw/{c.relpath.as_posix()}" for c in chunks]
    assert [f.path for f in result.report.files] == urls  # loaded back from S3
    assert np.array_equal(db_trades(tmp_path / "h.duckdb"), db_trades(local / "h.duckdb"))
    assert np.array_equal(db_trades(tmp_path / "h.duckdb"), served(gw, load_job_file(path)))
    stored = objects(s3env, bucket)
    assert sorted(stored) == sorted(
        key for c in chunks for key in (f"raw/{c.relpath}", f"raw/{c.relpath}.manifest.json")
    )
    client = s3env.client()
    for chunk in chunks:
        body = client.get_object(Bucket=bucket, Key=f"raw/{chunk.relpath}.manifest.json")["Body"]
        manifest = json.loads(body.read())
        mine = json.loads((local / "raw" / f"{chunk.relpath}.manifest.json").read_text())
        for key in ("request", "sha256", "bytes", "records", "file"):
            assert manifest[key] == mine[key]
        assert stored[f"raw/{chunk.relpath}"][0] == manifest["bytes"]
    assert local_files(tmp_path / "state") == []  # the verified .part files are gone
    assert not (tmp_path / "raw").exists()

    gw.requests.clear()
    again = run(path)

    assert gw.requests == []  # the manifests in S3 say every chunk is complete
    assert objects(s3env, bucket) == stored  # nothing uploaded again
    assert again.report is not None
    assert [f.status for f in again.report.files] == ["skipped"] * 3
    assert again.report.totals["loaded"] == 0
    assert len(db_trades(tmp_path / "h.duckdb")) == N_TRADES
    job_file = load_job_file(path)
    plans = local_plans(list(job_file.jobs), job_file.raw_dir)  # what `histetl jobs` shows
    assert [(c.status, c.records) for c in plans[0].chunks] == [
        ("complete", 1577),
        ("complete", 1423),
        ("complete", 0),
    ]

    # replay == what run did: the prefix replayed into a fresh database gives the same table
    fresh = tmp_path / "fresh.duckdb"
    replayed = Replayer(ReplayOptions(db=f"duckdb:///{fresh}", quarantine_dir=tmp_path / "q")).run(
        expand_paths([f"s3://{bucket}/raw/"])
    )
    assert replayed.totals["loaded"] == N_TRADES
    query = "SELECT * FROM trades ORDER BY ALL"
    with duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True) as con:
        ran = con.sql(query).to_arrow_table()
    with duckdb.connect(str(fresh), read_only=True) as con:
        assert con.sql(query).to_arrow_table().equals(ran)


def test_missing_bucket_is_one_line_before_any_request_to_the_api(
    gw: FakeGateway, s3env: S3Server, tmp_path: Path
) -> None:
    path = s3_job(tmp_path, gw, "s3://no-such-bucket/raw")

    result = CliRunner().invoke(main, ["run", str(path)], catch_exceptions=False)

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: s3://no-such-bucket/raw: the bucket does not exist",
        f"  hint: create it on {s3env.endpoint}, or fix the bucket name",
    ]
    assert gw.requests == []  # nothing paid for
    assert SECRET_KEY not in result.output


def test_unreachable_endpoint_is_one_line_before_any_request_to_the_api(
    gw: FakeGateway, s3env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    path = s3_job(tmp_path, gw, "s3://bucket/raw")

    result = CliRunner().invoke(main, ["run", str(path)], catch_exceptions=False)

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: s3://bucket/raw: cannot reach {closed}",
        "  hint: check AWS_ENDPOINT_URL and the network; rerun: loaded files are skipped",
    ]
    assert gw.requests == []


@pytest.fixture
def no_uploads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[S3Server, str]]:
    """An S3 server of its own, checking credentials: the run's user may do anything in the
    bucket except PUT a `.dbn.zst` object. Yields the server and the bucket."""
    server = start_s3(auth=True, free_requests=4)  # the 4 requests below
    try:
        bucket = server.bucket()
        iam = _iam(server)
        iam.create_user(UserName="run")
        allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
        deny = {
            "Effect": "Deny",
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/*.dbn.zst",
        }
        document = {"Version": "2012-10-17", "Statement": [allow, deny]}
        iam.put_user_policy(UserName="run", PolicyName="p", PolicyDocument=json.dumps(document))
        key = iam.create_access_key(UserName="run")["AccessKey"]
        env = {
            **server.env(),
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        monkeypatch.setattr(objstore, "_FILESYSTEMS", {})  # made afresh from these variables
        yield server, bucket
    finally:
        server.stop()


def _iam(server: S3Server) -> Any:
    return boto3.client(
        "iam",
        endpoint_url=server.endpoint,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
        region_name=REGION,
    )


def test_refused_upload_is_one_line_and_records_no_manifest(
    gw: FakeGateway, no_uploads: tuple[S3Server, str], tmp_path: Path
) -> None:
    server, bucket = no_uploads
    path = s3_job(tmp_path, gw, f"s3://{bucket}/raw")
    chunk = plan_chunks(load_job_file(path).jobs[0])[0]

    result = CliRunner().invoke(main, ["run", str(path)], catch_exceptions=False)

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: s3://{bucket}/raw/{chunk.relpath}: access denied by {server.endpoint}",
        "  hint: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)",
    ]
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in result.output
    assert "get_range" in [r.endpoint.split(".")[-1] for r in gw.requests]  # it was downloaded
    client = boto3.client("s3", endpoint_url=server.endpoint, region_name=REGION)  # as the run
    assert objects(server, bucket, client) == {}  # no data, no manifest
    assert local_files(tmp_path / "state") == []  # and no .part left behind
    assert not (tmp_path / "h.duckdb").exists()


def test_kill_between_upload_and_manifest_then_rerun_is_one_clean_load(
    gw: FakeGateway, s3env: S3Server, tmp_path: Path
) -> None:
    bucket = s3env.bucket()
    path = s3_job(tmp_path, gw, f"s3://{bucket}/raw")
    first = plan_chunks(load_job_file(path).jobs[0])[0]
    killed = subprocess.run(
        [sys.executable, "-m", "histetl.cli", "run", str(path)],
        env={**os.environ, FAULT_ENV: "before_manifest"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    assert list(objects(s3env, bucket)) == [f"raw/{first.relpath}"]  # uploaded, no manifest
    assert not (tmp_path / "h.duckdb").exists()

    result = run(path)

    assert [c.status for c in result.downloaded] == ["downloaded"] * 3  # the first fetched again
    assert result.report is not None
    assert result.report.totals["loaded"] == N_TRADES
    assert np.array_equal(db_trades(tmp_path / "h.duckdb"), served(gw, load_job_file(path)))
    assert len(objects(s3env, bucket)) == 6
    again = run(path)
    assert again.report is not None
    assert again.report.totals["loaded"] == 0
    assert len(db_trades(tmp_path / "h.duckdb")) == N_TRADES


def test_the_lock_of_an_s3_raw_dir_is_a_local_file_keyed_by_the_url(
    gw: FakeGateway, s3env: S3Server, tmp_path: Path
) -> None:
    bucket = s3env.bucket()
    url = f"s3://{bucket}/raw"
    path = s3_job(tmp_path, gw, url)
    folder = local_dir(url)
    assert folder.parent == tmp_path / "state" / "histetl" / "s3-raw"
    assert local_dir(f"s3://{bucket}/other") != folder
    with JobLock(url, ["es_trades"]), pytest.raises(LockBusyError) as excinfo:
        run(path, lock_wait_s=0.2)
    assert "another histetl run holds the lock of this job (es_trades: pid" in excinfo.value.message
    assert (folder / ".locks" / "es_trades.lock").is_file()
    assert gw.requests == []
    assert run(path).error is None


def test_unwritable_state_folder_is_a_config_error_before_any_request(
    gw: FakeGateway, s3env: S3Server, tmp_path: Path
) -> None:
    (tmp_path / "state").write_text("a file, not a directory")
    with pytest.raises(ConfigError, match="cannot create the lock file") as excinfo:
        run(s3_job(tmp_path, gw, f"s3://{s3env.bucket()}/raw"))
    assert "$XDG_STATE_HOME/histetl" in excinfo.value.message
    assert gw.requests == []
