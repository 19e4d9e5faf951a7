"""A deploy during the window, end to end: the layer in the local Lambda, moto as S3 and
Lambda, `lambdacov combine` as a user runs it, `coverage run` as the oracle.

Version A of examples/orders-api runs in two environments. The checkout then moves to
version B: three comment lines inserted at the top of orders/pricing.py and one of its
executed lines edited, orders/__init__.py removed (a namespace package), a module added,
the rest unchanged. Every expectation below is derived by hand from those edits.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from lambdacov.cli import main
from lambdacov.local import LocalLambda
from tests.support.lambda_fleet import clients, create_function, make_role
from tests.support.oracle import ORDERS, run_oracle_report

pytestmark = pytest.mark.e2e

WRAPPER = {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/lambdacov-wrapper"}
EVENTS = json.loads((ORDERS / "events.json").read_text())
INSERTED = 3  # comment lines put at the top of orders/pricing.py in version B
EDITED = 11  # version A's line of orders/pricing.py that B changes ("return PRICES[sku]")


def version_b(a: Path, b: Path) -> None:
    shutil.copytree(a, b)
    pricing = b / "orders" / "pricing.py"
    lines = pricing.read_text().splitlines(keepends=True)
    assert lines[EDITED - 1].strip() == "return PRICES[sku]"
    lines[EDITED - 1] = lines[EDITED - 1].replace("PRICES[sku]", "int(PRICES[sku])")
    pricing.write_text("# B\n# moved\n# down\n" + "".join(lines))
    (b / "orders" / "__init__.py").unlink()
    (b / "orders" / "audit.py").write_text("def record(order):\n    return order\n")


def run_environment(
    function_dir: Path, layer: Path, env: dict[str, str], events: Any, name: str = "orders"
) -> None:
    """One execution environment of the function ``name``: the events, then SHUTDOWN."""
    with LocalLambda(
        function_dir, "app.handler", layer=layer, env=env, function_name=name
    ) as function:
        for event in events:
            function.invoke(event)
        function.shutdown()


def combine(
    capsys: pytest.CaptureFixture[str], endpoint: str, bucket: str, root: Path, *extra: str
) -> tuple[dict[str, Any], str]:
    args = ["combine", "--bucket", bucket, "--endpoint-url", endpoint, "--region", "us-east-1"]
    with pytest.raises(SystemExit) as done:
        main([*args, "--source-root", str(root), "--cache-dir", str(root.parent / "cache"),
              "--json", "-", *extra])  # fmt: skip
    captured = capsys.readouterr()
    assert done.value.code in (0, None), captured.err
    return json.loads(captured.out), captured.err


def executed(document: dict[str, Any], path: Path | str) -> list[int]:
    """The lines of ``path``: named relative to the source root when under it (as reports do)."""
    name, root = str(path), document["lambdacov"]["source_root"]
    name = name.removeprefix(root + "/")
    return sorted(document["files"][name]["executed_lines"])


@pytest.fixture
def deployed_a(
    host_layer: Path, moto_endpoint: str, bucket: str, tmp_path: Path
) -> tuple[Path, dict[str, list[int]]]:
    """Version A, run in two environments; `coverage run`'s report of all the events."""
    a = tmp_path / "a"
    shutil.copytree(ORDERS, a)
    env = {**WRAPPER, "COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": moto_endpoint}
    run_environment(a, host_layer, env, EVENTS[:4])
    run_environment(a, host_layer, env, EVENTS[4:])
    (tmp_path / "oracle-a").mkdir()
    return a, run_oracle_report(a, a / "events.json", tmp_path / "oracle-a")


def test_a_report_on_new_code_shows_no_line_that_did_not_run_in_it(
    deployed_a: tuple[Path, dict[str, list[int]]],
    moto_endpoint: str,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, a_lines = deployed_a
    b = tmp_path / "b"
    version_b(deployed_a[0], b)

    document, err = combine(capsys, moto_endpoint, bucket, b)
    for unchanged in ("app.py", "orders/validation.py", "orders/store.py"):
        assert executed(document, b / unchanged) == a_lines[unchanged], unchanged
    # Recorded on other code: not shown on B's lines, and named.
    assert executed(document, b / "orders/pricing.py") == []
    [changed] = document["lambdacov"]["changed_files"]
    assert changed["path"] == str(b / "orders/pricing.py") and changed["objects"] == 0
    assert "orders/pricing.py: 2 object(s) of 1 other version(s)" in err
    # Gone from the checkout: reported from A's snapshot.
    copy = document["lambdacov"]["from_snapshots"]["/var/task/orders/__init__.py"]
    assert Path(copy).read_bytes() == (ORDERS / "orders/__init__.py").read_bytes()
    assert executed(document, copy) == a_lines.get("orders/__init__.py", [])  # a docstring
    assert "orders/audit.py" not in document["files"]  # never ran

    carried, _ = combine(capsys, moto_endpoint, bucket, b, "--carry-forward")
    moved = [line + INSERTED for line in a_lines["orders/pricing.py"] if line != EDITED]
    assert executed(carried, b / "orders/pricing.py") == moved
    for unchanged in ("app.py", "orders/validation.py", "orders/store.py"):
        assert executed(carried, b / unchanged) == a_lines[unchanged]


def test_with_no_checkout_every_file_is_the_oracle_of_the_code_that_ran(
    deployed_a: tuple[Path, dict[str, list[int]]],
    moto_endpoint: str,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, a_lines = deployed_a
    empty = tmp_path / "empty"
    empty.mkdir()
    document, _ = combine(capsys, moto_endpoint, bucket, empty)
    copies = document["lambdacov"]["from_snapshots"]
    # Every file that ran (orders/__init__.py, a docstring, has no statement to report).
    assert {name.removeprefix("/var/task/") for name in copies} == {*a_lines, "orders/__init__.py"}
    for name, copy in copies.items():
        relative = name.removeprefix("/var/task/")
        assert Path(copy).read_bytes() == (ORDERS / relative).read_bytes()
        assert executed(document, copy) == a_lines.get(relative, []), relative


def test_since_deploy_keeps_only_the_redeployed_codes_environments(
    deployed_a: tuple[Path, dict[str, list[int]]],
    host_layer: Path,
    moto_endpoint: str,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    b = tmp_path / "b"
    version_b(deployed_a[0], b)
    time.sleep(1.1)  # environments' start times are kept to the second
    lam, iam = clients(moto_endpoint, "us-east-1")
    create_function(lam, make_role(iam), "orders")  # the deploy of B
    time.sleep(1.1)
    env = {**WRAPPER, "COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": moto_endpoint}
    run_environment(b, host_layer, env, EVENTS[:2])
    (b / "events-b.json").write_text(json.dumps(EVENTS[:2]))
    (tmp_path / "oracle-b").mkdir()
    b_lines = run_oracle_report(b, b / "events-b.json", tmp_path / "oracle-b")

    document, err = combine(
        capsys, moto_endpoint, bucket, b, "--since-deploy", "--function", "orders"
    )
    assert len(document["lambdacov"]["inputs"]) == 1
    assert document["lambdacov"]["before_deploy_count"] == 2
    assert document["lambdacov"]["changed_files"] == []
    for name, lines in b_lines.items():
        assert executed(document, b / name) == lines, name
    assert "2 object(s) of environments started before the last update" in err
