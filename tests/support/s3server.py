"""A throw-away S3-compatible server for tests: moto in server mode on 127.0.0.1.

``start_s3()`` runs ``moto.server`` in a child process on a free port and waits until it
answers, returning an :class:`S3Server`. ``env()`` gives the standard ``AWS_*`` variables that
point histetl (delta-rs, s3fs) and boto3 at it: fake credentials, ``AWS_ENDPOINT_URL``, and
``AWS_ALLOW_HTTP=true`` (delta-rs refuses plain http otherwise). ``bucket()`` creates a fresh,
uniquely named bucket. ``start_s3(auth=True)`` checks every request's credentials (moto's
IAM: the test keys are unknown to it, so everything is denied); ``free_requests=N`` lets the
first N requests through unchecked, to create a bucket and IAM users with their policies.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from tests.support.pgserver import free_port

ACCESS_KEY = "histetl-test-key"
SECRET_KEY = "histetl-test-secret-do-not-print"
REGION = "us-east-1"


@dataclasses.dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    _proc: subprocess.Popen[bytes] = dataclasses.field(repr=False)

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def bucket(self) -> str:
        name = f"histetl-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def start_s3(auth: bool = False, timeout_s: float = 30.0, free_requests: int = 0) -> S3Server:
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(free_requests)} if auth else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = S3Server(f"http://127.0.0.1:{port}", proc)
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=1):
                return server
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"moto server did not answer on {server.endpoint}") from None
            time.sleep(0.1)
