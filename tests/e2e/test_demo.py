"""`lambdacov demo`, the README's first command, end to end; its report is checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lambdacov.demo import demo_events
from tests.support.oracle import ORDERS, run_oracle_report

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    output = tmp_path_factory.mktemp("demo")
    done = subprocess.run(
        [sys.executable, "-m", "lambdacov", "demo", "--output", str(output), "--invocations", "9"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return output, done


def test_demo_succeeds_and_shows_each_step(demo_run: tuple[Path, subprocess.CompletedProcess[str]]):
    output, done = demo_run
    assert done.returncode == 0, done.stdout + done.stderr
    for command in (
        "lambdacov build-layer",
        "lambdacov publish-layer",
        "lambdacov attach",
        "lambdacov doctor",
        "lambdacov combine",
    ):
        assert f"$ {command}" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert (output / "htmlcov" / "index.html").exists()


def test_demo_report_equals_coverage_run_of_the_same_events(
    demo_run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    output, done = demo_run
    assert done.returncode == 0, done.stdout + done.stderr
    events = tmp_path / "events.json"
    events.write_text(json.dumps(demo_events(ORDERS, 9)))
    expected = run_oracle_report(ORDERS, events, tmp_path)
    report = json.loads((output / "coverage.json").read_text())
    measured = {
        # The demo combines from the function's directory: names are relative to it.
        (str(Path(name).relative_to(ORDERS)) if Path(name).is_absolute() else name): sorted(
            entry["executed_lines"]
        )
        for name, entry in report["files"].items()
        if entry["executed_lines"]
    }
    assert measured == expected


def test_demo_html_report_renders_in_a_browser(
    demo_run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    from tests.browser.test_html_report import Links, rendered_dom

    output, done = demo_run
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((output / "coverage.json").read_text())
    index = output / "htmlcov" / "index.html"
    dom = rendered_dom(index, tmp_path / "profile")
    links = Links()
    links.feed(dom)
    assert "<title>" in dom and "orders-api" in dom
    assert links.texts["total-percent"].strip() == f"{report['totals']['percent_covered_display']}%"
    page = next(href for href in links.hrefs if href.endswith(".html") and "app_py" in href)
    file_dom = rendered_dom(index.parent / page, tmp_path / "profile")
    assert "Coverage for" in file_dom and "app.py" in file_dom
