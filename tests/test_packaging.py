"""The installed package is the source tree: every histetl package is listed for setuptools
(a missing one installs fine in editable mode and breaks the plain `scripts/bootstrap` set-up)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_for_the_install() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "histetl").rglob("__init__.py")
    }
    assert found - listed == set()
    mapped = set(config.get("package-dir", {}))
    for data in listed - found:  # data packages: a folder (histetl/data) or mapped (histetl.sql)
        assert data in mapped or (ROOT / data.replace(".", "/")).is_dir(), data
