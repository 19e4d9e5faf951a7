"""Every report names files relative to --source-root, whatever directory combine runs in.

The same objects are combined from a directory outside the source root and
from its parent (where coverage.py on its own would say ``src/app.py``); the
table, JSON, Cobertura XML, LCOV, markdown and both HTML indexes must name
``app.py`` and ``pkg/mod.py``, never the root's path.
"""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.support.combine_data import write_data
from tests.support.lambda_fleet import run_cli

APP = "import pkg.mod\n\n\ndef handler(event, context):\n    return pkg.mod.double(event)\n"
MOD = "def double(n):\n    if n:\n        return n * 2\n    return 0\n"
NAMES = {"app.py", "pkg/mod.py"}


@pytest.fixture
def source_root(tmp_path: Path) -> Path:
    root = tmp_path / "checkout" / "src"
    (root / "pkg").mkdir(parents=True)
    (root / "app.py").write_text(APP)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "mod.py").write_text(MOD)
    return root


@pytest.fixture
def delivered(s3: Any, bucket: str, tmp_path: Path) -> str:
    """One data object as the layer writes it, for /var/task/app.py and /var/task/pkg/mod.py."""
    local = write_data(
        tmp_path / "object.coverage",
        {"/var/task/app.py": [1, 4, 5], "/var/task/pkg/mod.py": [1, 2, 3]},
    )
    key = f"coverage/2024/01/15/fn-{uuid.uuid4().hex}.coverage"
    s3.put_object(Bucket=bucket, Key=key, Body=local.read_bytes())
    return bucket


@pytest.mark.parametrize("where", ["outside", "parent"])
def test_every_report_names_files_relative_to_the_source_root(
    where: str,
    source_root: Path,
    delivered: str,
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cwd = tmp_path / "elsewhere" if where == "outside" else source_root.parent
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    out = tmp_path / "out"
    common = ["combine", "--bucket", delivered, "--endpoint-url", moto_endpoint]
    common += ["--region", "us-east-1", "--cache-dir", str(tmp_path / "cache")]
    common += ["--prefix", "coverage/", "--source-root", str(source_root)]

    code, table, err = run_cli(capsys, *common)
    assert code == 0, err
    assert "app.py" in table and "pkg/mod.py" in table
    assert str(source_root) not in table and "src/" not in table

    reports = ["--html", str(out / "html"), "--xml", str(out / "cov.xml")]
    reports += ["--json", str(out / "cov.json"), "--lcov", str(out / "cov.lcov")]
    reports += ["--markdown", str(out / "summary.md")]
    code, _, err = run_cli(capsys, *common, *reports)
    assert code == 0, err

    document = json.loads((out / "cov.json").read_text())
    assert set(document["files"]) == NAMES
    classes = ET.parse(out / "cov.xml").getroot().iter("class")
    assert {element.get("filename") for element in classes} == NAMES
    lcov = (out / "cov.lcov").read_text()
    assert {line[3:] for line in lcov.splitlines() if line.startswith("SF:")} == NAMES
    # coverage.py's own index marks the separators up: pkg<span class="sep">/</span>mod.py
    separator = '<span class="sep">/</span>'
    for text in (
        (out / "summary.md").read_text(),
        (out / "html" / "index.html").read_text(),
        (out / "html" / "coverage_index.html").read_text().replace(separator, "/"),
    ):
        assert all(name in text for name in NAMES)
        assert str(source_root) not in text and "src/app.py" not in text
