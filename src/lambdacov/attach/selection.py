"""Which functions a fleet command acts on: names or ARNs, --pattern, --tag, --all, --exclude.

Named functions are always taken (a missing one is reported, not fatal);
``--pattern``, ``--tag`` and ``--all`` choose among the functions listed in the
region (all of ``--pattern`` and ``--tag`` must match; ``--pattern`` is a
regular expression searched in the name, ``--tag KEY=VALUE`` or ``--tag KEY``);
``--exclude`` removes names matching a regular expression from the result.
Runtimes are not filtered here: the planner reports non-Python functions as
skipped, with the reason.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lambdacov.aws import Retrier, each_page, translate, translating
from lambdacov.errors import UsageError


@dataclass(frozen=True)
class Selection:
    """What the user asked for, validated."""

    names: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    tags: tuple[tuple[str, str | None], ...] = ()
    everything: bool = False
    excludes: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def create(
        cls,
        names: Iterable[str] = (),
        *,
        patterns: Iterable[str] = (),
        tags: Iterable[str] = (),
        everything: bool = False,
        excludes: Iterable[str] = (),
    ) -> Selection:
        """Parse the options; raise UsageError when they are malformed or select nothing."""
        selection = cls(
            tuple(dict.fromkeys(names)),
            tuple(_regex(pattern, "--pattern") for pattern in patterns),
            tuple(_tag(tag) for tag in tags),
            everything,
            tuple(_regex(pattern, "--exclude") for pattern in excludes),
        )
        if not (selection.names or selection.lists):
            raise UsageError(
                "no function selected",
                "name functions, or use --pattern REGEX, --tag KEY=VALUE or --all",
            )
        return selection

    @property
    def lists(self) -> bool:
        """Whether the region's functions must be listed (--pattern, --tag or --all)."""
        return bool(self.patterns or self.tags or self.everything)

    def matches(self, name: str, tags: Mapping[str, str]) -> bool:
        """Whether a listed function is chosen by --pattern and --tag."""
        return all(pattern.search(name) for pattern in self.patterns) and all(
            key in tags and (value is None or tags[key] == value) for key, value in self.tags
        )

    def excluded(self, name: str) -> bool:
        """Whether --exclude removes this function."""
        return any(pattern.search(name) for pattern in self.excludes)


@dataclass(frozen=True)
class SelectedFunction:
    """A function's configuration and tags, as read when it was selected."""

    configuration: Mapping[str, Any] = field(repr=False)
    tags: Mapping[str, str] = field(repr=False)

    @property
    def name(self) -> str:
        """The function's name."""
        return str(self.configuration["FunctionName"])

    @property
    def arn(self) -> str:
        """The function's ARN."""
        return str(self.configuration["FunctionArn"])

    @property
    def region(self) -> str:
        """The function's region, from its ARN."""
        return self.arn.split(":")[3]


@dataclass(frozen=True)
class Missing:
    """A named function that could not be read, and why."""

    name: str
    message: str


@dataclass(frozen=True)
class SelectionResult:
    """The selected functions (by ARN, no duplicates) and the names that failed."""

    functions: tuple[SelectedFunction, ...]
    missing: tuple[Missing, ...]


def select_functions(
    selection: Selection,
    client_for: Callable[[str | None], Any],
    *,
    retrier: Retrier,
    concurrency: int = 8,
) -> SelectionResult:
    """Read every selected function's configuration and tags.

    ``client_for(region)`` returns the Lambda client of a region (None: the
    default region); a function named by ARN is read in the ARN's region.
    """
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        named = list(pool.map(lambda name: _read_named(name, client_for, retrier), selection.names))
        listed: list[SelectedFunction | Missing] = []
        if selection.lists:
            client = client_for(None)
            configurations = _list_functions(client, retrier)
            if not selection.tags:
                # Without --tag, only the functions that pass --pattern need their tags.
                configurations = [
                    c for c in configurations if selection.matches(c["FunctionName"], {})
                ]
            listed = list(pool.map(lambda c: _with_tags(c, client, retrier), configurations))
    functions: dict[str, SelectedFunction] = {}
    missing: list[Missing] = []
    for item in named:
        if isinstance(item, Missing):
            missing.append(item)
        elif not selection.excluded(item.name):
            functions.setdefault(item.arn, item)
    for item in listed:
        if isinstance(item, Missing):
            missing.append(item)
        elif selection.matches(item.name, item.tags) and not selection.excluded(item.name):
            functions.setdefault(item.arn, item)
    return SelectionResult(tuple(functions.values()), tuple(missing))


def _regex(pattern: str, option: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise UsageError(
            f"{option} {pattern!r} is not a valid regular expression: {error}",
            "use Python regular expression syntax, e.g. '^orders-'",
        ) from None


def _tag(text: str) -> tuple[str, str | None]:
    key, separator, value = text.partition("=")
    if not key:
        raise UsageError(f"--tag {text!r} has no key", "write --tag KEY=VALUE or --tag KEY")
    return key, value if separator else None


def _region_of(name: str) -> str | None:
    parts = name.split(":")
    return parts[3] if name.startswith("arn:") and len(parts) > 3 else None


def _read_named(
    name: str, client_for: Callable[[str | None], Any], retrier: Retrier
) -> SelectedFunction | Missing:
    parts = name.split(":")
    qualifier = parts[7] if name.startswith("arn:") and len(parts) > 7 else None
    if qualifier not in (None, "$LATEST"):
        return Missing(name, "a version or alias cannot be changed: name the function itself")
    try:
        client = client_for(_region_of(name))
        response = retrier.call(lambda: client.get_function(FunctionName=name))
    except Exception as error:
        if type(error).__module__.startswith("botocore"):
            return Missing(name, translate(error, "read the function", name).message)
        raise
    return SelectedFunction(response["Configuration"], response.get("Tags") or {})


def _list_functions(client: Any, retrier: Retrier) -> list[Mapping[str, Any]]:
    with translating("list the functions"):
        return [
            function
            for page in each_page(client.list_functions, {}, retrier=retrier)
            for function in page.get("Functions", [])
        ]


def _with_tags(
    configuration: Mapping[str, Any], client: Any, retrier: Retrier
) -> SelectedFunction | Missing:
    arn = configuration["FunctionArn"]
    try:
        if configuration.get("PackageType") == "Image":
            # ListFunctions may leave out an image function's ImageConfigResponse,
            # which attach redirects and detach restores: read the whole configuration.
            read = functools.partial(client.get_function_configuration, FunctionName=arn)
            configuration = retrier.call(read)
        tags = retrier.call(lambda: client.list_tags(Resource=arn)).get("Tags") or {}
    except Exception as error:
        if type(error).__module__.startswith("botocore"):
            name = configuration["FunctionName"]
            return Missing(name, translate(error, "read the function's tags", name).message)
        raise
    return SelectedFunction(configuration, tags)
