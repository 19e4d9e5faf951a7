"""The SAM and Terraform examples say what lambdacov really does and accepts.

The CI example runs lambdacov through the GitHub Action: tests/unit/test_action.py.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import typer.main
import yaml

from lambdacov import conventions
from lambdacov.attach.iam import coverage_policy
from lambdacov.cli import app

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads !Ref / !Sub / !GetAtt as plain values."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    return loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else None


_CloudFormationLoader.add_multi_constructor("!", _tag)


def test_sam_template_sets_what_attach_sets() -> None:
    template = yaml.load(
        (EXAMPLES / "sam" / "template.yaml").read_text(), Loader=_CloudFormationLoader
    )
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables[conventions.EXEC_WRAPPER_VAR] == conventions.WRAPPER_PATH
    assert "COVERAGE_S3_BUCKET" in variables
    statement = template["Resources"]["OrdersApi"]["Properties"]["Policies"][0]["Statement"][0]
    assert statement["Action"] == "s3:PutObject"
    assert statement["Resource"].endswith("/coverage/*")


def test_terraform_snippet_sets_what_attach_sets() -> None:
    text = (EXAMPLES / "terraform" / "lambdacov.tf").read_text()
    assert f'{conventions.EXEC_WRAPPER_VAR} = "{conventions.WRAPPER_PATH}"' in text
    assert "COVERAGE_S3_BUCKET" in text
    assert re.search(r'Action\s*=\s*"s3:PutObject"', text)
    assert "${var.coverage_bucket}/coverage/*" in text


def test_sam_and_terraform_grant_what_attach_grants() -> None:
    document = coverage_policy("BUCKET", "coverage/", None, "arn:aws:lambda:r:1:function:f")
    wanted = {(s["Action"], s["Resource"].split(":::BUCKET/")[1]) for s in document["Statement"]}
    template = yaml.load(
        (EXAMPLES / "sam" / "template.yaml").read_text(), Loader=_CloudFormationLoader
    )
    sam = template["Resources"]["OrdersApi"]["Properties"]["Policies"][0]["Statement"]
    assert {(s["Action"], s["Resource"].split("}/")[1]) for s in sam} == wanted
    text = (EXAMPLES / "terraform" / "lambdacov.tf").read_text()
    terraform = re.findall(r'Action\s*=\s*"([^"]+)"\s*Resource\s*=\s*"[^"]*\}/([^"]+)"', text)
    assert set(terraform) == wanted


def _markdown_commands(text: str) -> list[list[str]]:
    """`lambdacov ...` lines of the bash blocks, continuations joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for raw in joined.splitlines():
            line = raw.split("  #", 1)[0].strip()
            if line.startswith("lambdacov "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_every_command_in_the_readme_and_quickstart_parses_with_the_real_cli() -> None:
    root = typer.main.get_command(app)
    seen = []
    for document in (EXAMPLES.parent / "README.md", EXAMPLES.parent / "docs" / "quickstart.md"):
        for args in _markdown_commands(document.read_text()):
            command = root.commands[args[0]]  # type: ignore[attr-defined]
            command.make_context(args[0], list(args[1:]))  # raises on an unknown option
            seen.append(args[0])
    assert {"publish-layer", "attach", "doctor", "combine", "detach"} <= set(seen)
