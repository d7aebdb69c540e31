"""histetl.textable: aligned plain-text columns, two spaces apart."""

from __future__ import annotations

from histetl.textable import printable, render


def test_columns_align_left_by_default_and_right_where_asked() -> None:
    rows = [["table", "rows", "status"], ["trades", "1,200", "loaded"], ["mbp_10", "7", "ok"]]

    text = render(rows, right={1})

    assert text.splitlines() == [
        "table    rows  status",
        "trades  1,200  loaded",
        "mbp_10      7  ok",
    ]


def test_a_dashed_rule_follows_each_row_in_rules() -> None:
    rows = [["file", "loaded"], ["a.dbn", "10"], ["total", "10"]]

    text = render(rows, right={1}, rules={0, 1})

    assert text == "file   loaded\n-----  ------\na.dbn      10\n-----  ------\ntotal      10"


def test_trailing_blanks_of_a_row_are_cut() -> None:
    rows = [["symbol", "note"], ["ES.c.0", ""], ["NQ.c.0", "rolled"]]

    assert render(rows).splitlines() == ["symbol  note", "ES.c.0", "NQ.c.0  rolled"]


def test_a_header_alone_renders_as_one_line() -> None:
    assert render([["a", "bb"]]) == "a  bb"


def test_printable_escapes_control_characters_but_keeps_indented_continuation_lines() -> None:
    assert printable("evil\nERROR fake.dbn") == "evil\\nERROR fake.dbn"
    assert printable("red\x1b[31m\ttab\r\x7f") == "red\\x1b[31m\\ttab\\r\\x7f"
    assert printable("what\n  hint: next") == "what\n  hint: next"
    assert printable("plain: ünïcode €") == "plain: ünïcode €"


def test_a_cell_is_always_one_line() -> None:
    assert render([["file"], ["a\n  b"]]).splitlines() == ["file", "a\\n  b"]
