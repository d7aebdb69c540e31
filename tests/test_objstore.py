"""Raw DBN files in object storage: `histetl replay s3://bucket/prefix/` lists and streams
.dbn and .dbn.zst objects from the session's S3 server (moto) exactly as local files load."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import duckdb
import pytest
import zstandard

from tests.support.s3server import SECRET_KEY, S3Server
from tests.targets.duckdb.test_sink import replay, trades


@pytest.fixture
def raw(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, list[Path]]:
    """A bucket with raw/ holding two plain DBN files (one a level deeper), a .dbn.zst and a
    file that is not DBN; the AWS_* variables point at the server. Returns the raw/ URL and
    the local copies of the DBN files."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = s3_server.bucket()
    client = s3_server.client()
    t1, t2 = trades(tmp_path)
    t3 = tmp_path / "t3.dbn.zst"
    t3.write_bytes(zstandard.ZstdCompressor().compress(t1.read_bytes()[: -48 * 500]))
    for key, path in (("raw/t1.dbn", t1), ("raw/deeper/t2.dbn", t2), ("raw/t3.dbn.zst", t3)):
        client.upload_file(str(path), bucket, key)
    client.put_object(Bucket=bucket, Key="raw/notes.txt", Body=b"not DBN")
    return f"s3://{bucket}/raw/", [t1, t2, t3]


def _rows(db: Path) -> list[tuple[object, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql("SELECT * FROM trades ORDER BY ALL").fetchall()


def test_replay_of_an_s3_prefix_loads_what_the_local_files_load_and_reruns_skip(
    raw: tuple[str, list[Path]], tmp_path: Path
) -> None:
    url, local = raw
    subprocess.run(replay(f"duckdb:///{tmp_path / 'local.duckdb'}", local, tmp_path), check=True)
    report = tmp_path / "report.json"
    command = [
        *replay(f"duckdb:///{tmp_path / 's3.duckdb'}", [url], tmp_path),
        "--report",
        str(report),
    ]
    subprocess.run(command, check=True)
    files = json.loads(report.read_text())["files"]
    assert [f["path"] for f in files] == [f"{url}deeper/t2.dbn", f"{url}t1.dbn", f"{url}t3.dbn.zst"]
    assert [f["status"] for f in files] == ["loaded"] * 3
    assert _rows(tmp_path / "s3.duckdb") == _rows(tmp_path / "local.duckdb")
    assert len(_rows(tmp_path / "local.duckdb")) == 7000
    subprocess.run(command, check=True)
    assert [f["status"] for f in json.loads(report.read_text())["files"]] == ["skipped"] * 3


def test_replay_of_one_s3_object_into_an_s3_lake_loads_it(
    raw: tuple[str, list[Path]], tmp_path: Path
) -> None:
    url, local = raw
    bucket = url.split("/")[2]
    subprocess.run(replay(f"delta:///{tmp_path / 'local'}", local[2:], tmp_path), check=True)
    subprocess.run(replay(f"delta+s3://{bucket}/lake", [f"{url}t3.dbn.zst"], tmp_path), check=True)
    from tests.targets.delta.test_sink import Lake

    assert Lake("", f"s3://{bucket}/lake").rows().equals(Lake("", str(tmp_path / "local")).rows())


def test_replay_of_a_truncated_s3_object_fails_it_and_loads_nothing(
    raw: tuple[str, list[Path]], s3_server: S3Server, tmp_path: Path
) -> None:
    url, local = raw
    data = local[2].read_bytes()
    s3_server.client().put_object(Bucket=url.split("/")[2], Key="cut/t3.dbn.zst", Body=data[:-7])
    cut = url.replace("/raw/", "/cut/t3.dbn.zst")
    report = tmp_path / "report.json"
    command = [
        *replay(f"duckdb:///{tmp_path / 'h.duckdb'}", [cut], tmp_path),
        "--report",
        str(report),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 1, result.stderr
    (file,) = json.loads(report.read_text())["files"]
    assert (file["status"], file["loaded"]) == ("failed", 0)
    assert "truncated" in file["error"]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("s3://{bucket}/nothing/", "error: PATH: no DBN files match 's3://{bucket}/nothing/'"),
        ("s3://no-such-bucket/raw/", "error: s3://no-such-bucket/raw: the bucket does not exist"),
    ],
)
def test_replay_of_s3_inputs_that_are_not_there_is_one_line(
    raw: tuple[str, list[Path]], tmp_path: Path, where: str, expected: str
) -> None:
    bucket = raw[0].split("/")[2]
    command = replay(f"duckdb:///{tmp_path / 'h.duckdb'}", [where.format(bucket=bucket)], tmp_path)
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[0] == expected.format(bucket=bucket)
    assert "Traceback" not in result.stderr
    assert SECRET_KEY not in result.stderr
