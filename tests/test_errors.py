"""histetl.errors: what a message looks like, which exit code each error carries, and which
errors are worth retrying."""

from __future__ import annotations

import errno
import os

import pytest

from histetl.errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    ConfigError,
    DatabaseTimeoutError,
    DecodeError,
    HistetlError,
    LoadError,
    SourceError,
    TerminalLoadError,
    TransientError,
    TransientLoadError,
    TransientSourceError,
    UnsupportedSchemaError,
    first_line,
    full_disk,
)


def test_message_is_where_then_what_then_the_hint_on_its_own_line() -> None:
    error = HistetlError("not a number", where="jobs[0].limit", hint="write an integer")
    assert error.message == "jobs[0].limit: not a number\n  hint: write an integer"
    assert str(error) == error.message
    assert HistetlError("bare").message == "bare"
    assert HistetlError("no hint", where="x").message == "x: no hint"


def test_config_errors_exit_2_and_every_other_error_exits_1() -> None:
    assert ConfigError("x").exit_code == EXIT_USAGE == 2
    for error in (HistetlError("x"), SourceError("x"), LoadError("x"), DecodeError("f", "x")):
        assert error.exit_code == EXIT_FAILED == 1, type(error).__name__


def test_decode_error_names_the_file_and_byte_offset_and_says_nothing_was_loaded() -> None:
    error = DecodeError("raw/a.dbn.zst", "record cut off", offset=4096)
    assert error.path == "raw/a.dbn.zst"
    assert error.offset == 4096
    assert error.message == (
        "raw/a.dbn.zst at byte 4096: record cut off\n"
        "  hint: nothing from this file was loaded; re-download or re-export it"
    )
    assert DecodeError("a.dbn", "bad", hint="other").message == "a.dbn: bad\n  hint: other"
    assert isinstance(UnsupportedSchemaError("a.dbn", "no table"), DecodeError)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (TransientSourceError("429"), True),
        (TransientLoadError("connection dropped"), True),
        (DatabaseTimeoutError("silent server"), True),
        (SourceError("401"), False),
        (TerminalLoadError("password authentication failed"), False),
        (LoadError("x"), False),
        (ConfigError("x"), False),
    ],
    ids=lambda e: type(e).__name__ if isinstance(e, Exception) else str(e),
)
def test_only_transient_errors_are_marked_for_retry(error: HistetlError, transient: bool) -> None:
    assert isinstance(error, TransientError) is transient


def test_the_transient_errors_stay_in_their_stage() -> None:
    assert isinstance(TransientSourceError("x"), SourceError)
    assert isinstance(DatabaseTimeoutError("x"), TransientLoadError)
    assert isinstance(TransientLoadError("x"), LoadError)
    assert not isinstance(TerminalLoadError("x"), TransientError)


def test_first_line_keeps_the_first_line_its_class_name_when_empty_and_caps_the_length() -> None:
    assert first_line(ValueError("  first\nsecond\nthird")) == "first"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(RuntimeError("   \n ")) == "RuntimeError"
    assert first_line(RuntimeError("x" * 500)) == "x" * 300
    assert first_line(RuntimeError("abcdef"), limit=3) == "abc"


def test_full_disk_is_enospc_in_the_words_of_the_os_or_of_a_driver_wrapping_it() -> None:
    assert full_disk(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert full_disk(RuntimeError('Could not write file "x.wal": No space left on device'))
    assert not full_disk(OSError(errno.EACCES, os.strerror(errno.EACCES)))
