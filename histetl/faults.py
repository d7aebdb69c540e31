"""The one fault-injection seam: crash points for the crash-safety tests.

The pipeline calls `fault_point` at three places of a file's load (after a batch, before the
commit, after it), and `run` at one place of a download (before_manifest: the chunk's data is
in place, its manifest not yet written). With `HISTETL_TEST_FAULT=<point>[:<records>]` set,
the process SIGKILLs itself there, so the tests can prove that a rerun after a crash at any
point equals one clean load. Unset (always, outside the tests) it is one dictionary lookup;
nothing else in histetl reads it.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "HISTETL_TEST_FAULT"


def fault_point(name: str, records: int = 0) -> None:
    """SIGKILL this process at point `name` (after_batch once `records` are loaded,
    before_commit, after_commit, before_manifest) when HISTETL_TEST_FAULT asks for it."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, _, at = spec.partition(":")
    if point == name and (not at or records >= int(at)):
        os.kill(os.getpid(), signal.SIGKILL)
