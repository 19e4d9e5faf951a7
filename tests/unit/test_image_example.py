"""examples/container and docs/where-it-runs.md say what lambdacov builds and attach sets."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import typer.main
import yaml

from lambdacov import conventions
from lambdacov.attach.plan import AttachSettings, plan_attach
from lambdacov.cli import app
from lambdacov.layer import build

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "examples" / "container"
DOCKERFILE = (EXAMPLE / "Dockerfile").read_text(encoding="utf-8")


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads !Ref / !Sub as plain values."""


_CloudFormationLoader.add_multi_constructor(
    "!", lambda loader, _suffix, node: loader.construct_scalar(node)
)


def _copies(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^COPY (\S+) (\S+)$", text, re.MULTILINE)


def test_the_dockerfile_puts_the_layer_s_files_where_lambda_looks_for_them() -> None:
    layer_copies = {
        source.split("lambdacov-layer/", 1)[1]: destination
        for source, destination in _copies(DOCKERFILE)
        if "lambdacov-layer/" in source
    }
    # The directory build-layer --format dir writes: packages under python/, the extension
    # under extensions/ (the names the build uses), each copied to the same place under /opt.
    site = build._SITE
    extension_dir = next(name for name in build._LAYER_SCRIPTS if "/" in name).split("/")[0]
    assert layer_copies == {f"{site}/": f"/opt/{site}/", f"{extension_dir}/": "/opt/extensions/"}
    assert DOCKERFILE.count("FROM public.ecr.aws/lambda/python:") == 1


def test_the_docs_show_the_example_s_two_lines() -> None:
    page = (ROOT / "docs" / "where-it-runs.md").read_text(encoding="utf-8")
    documented = [
        (source.removeprefix("lambdacov-layer/"), destination)
        for source, destination in _copies(page)
    ]
    example = [
        (source.split("lambdacov-layer/", 1)[1], destination)
        for source, destination in _copies(DOCKERFILE)
        if "lambdacov-layer/" in source
    ]
    assert documented == example


def test_the_build_command_in_the_dockerfile_parses_with_the_real_cli() -> None:
    (line,) = [line for line in DOCKERFILE.splitlines() if "lambdacov build-layer" in line]
    words = shlex.split(line.lstrip("# "))[1:]
    command = typer.main.get_command(app).commands[words[0]]  # type: ignore[attr-defined]
    context = command.make_context(words[0], words[1:])  # raises on an unknown option
    assert context.params["layout"] == "dir"


def test_the_sam_template_wires_the_image_as_attach_does() -> None:
    template: dict[str, Any] = yaml.load(
        (EXAMPLE / "template.yaml").read_text(encoding="utf-8"), Loader=_CloudFormationLoader
    )
    properties = template["Resources"]["OrdersApiImage"]["Properties"]
    (cmd,) = re.findall(r'^CMD \["([^"]+)"\]$', DOCKERFILE, re.MULTILINE)
    # What attach would set on this function, had the template left the wiring out.
    configuration = {
        "FunctionName": "orders",
        "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:orders",
        "PackageType": "Image",
        "ImageConfigResponse": {"ImageConfig": {"Command": [cmd]}},
    }
    plan = plan_attach(configuration, {}, AttachSettings.create("bucket"), None)
    assert plan.action == "update"
    assert properties["PackageType"] == "Image"
    assert properties["ImageConfig"] == dict(plan.image_after or {})
    variables = properties["Environment"]["Variables"]
    assert (
        variables[conventions.ORIGINAL_HANDLER_VAR]
        == plan.env_after[conventions.ORIGINAL_HANDLER_VAR]
    )
    assert conventions.EXEC_WRAPPER_VAR not in variables
    assert "COVERAGE_S3_BUCKET" in variables
