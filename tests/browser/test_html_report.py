"""The HTML report opens in a real browser (headless Debian chromium): totals and links."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_combine_s3 import cli_args, put_many, run_cli

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "chromium is not installed: the HTML report's browser test needs it "
            "(apt-get install -y --no-install-recommends chromium; .ci/run does this)"
        )
    return found


def rendered_dom(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after chromium has loaded and rendered it."""
    process = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-2000:]
    assert "<body" in process.stdout, process.stderr[-2000:]
    return process.stdout


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.texts: dict[str, str] = {}
        self._id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(str(values["href"]))
        self._id = values.get("id")

    def handle_endtag(self, tag: str) -> None:
        self._id = None

    def handle_data(self, data: str) -> None:
        if self._id:
            self.texts[self._id] = self.texts.get(self._id, "") + data


def test_index_page_renders_totals_and_its_links_resolve(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    chromium()
    put_many(s3, bucket, tmp_path, 9)
    html = tmp_path / "html"
    code, _, stderr = run_cli(
        cli_args(
            moto_endpoint, bucket, tmp_path, "--html", str(html), "--json", str(tmp_path / "r.json")
        ),
        capsys,
    )
    assert code == 0, stderr
    document = json.loads((tmp_path / "r.json").read_text())

    dom = rendered_dom(html / "index.html", tmp_path / "profile")
    parser = Links()
    parser.feed(dom)
    assert (
        parser.texts["total-percent"].strip() == f"{document['totals']['percent_covered_display']}%"
    )
    assert parser.texts["total-statements"].strip() == str(document["totals"]["num_statements"])
    assert parser.texts["objects"].strip() == "9"
    rows = re.findall(r'class="function-row" data-function="([^"]+)"', dom)
    assert rows == sorted(document["lambdacov"]["functions"])
    for name, info in document["lambdacov"]["functions"].items():
        percent = 100 * info["covered_lines"] / info["num_statements"]
        assert f"{percent:.1f}%" in dom, name

    pages = [href for href in parser.hrefs if href.endswith(".html")]
    assert "coverage_index.html" in pages
    assert len(pages) == len(document["files"]) + 1
    for href in pages:
        assert (html / urllib.parse.unquote(href)).is_file(), href

    # A linked coverage.py page renders too, with the functions as the lines' contexts.
    page = next(href for href in pages if href != "coverage_index.html")
    file_dom = rendered_dom(html / urllib.parse.unquote(page), tmp_path / "profile")
    assert "Coverage for" in file_dom
    assert re.search(r"fn-[012]", file_dom)
    assert any(Path(name).name in file_dom for name in document["files"])
