"""Reports from a combine: coverage.py's own (HTML, XML, JSON, LCOV) plus lambdacov's pages.

coverage.py computes every number (statements, branches, percentages) from a
data file holding only the files that exist in the source root. lambdacov
adds what coverage.py cannot know: totals per function, the time window, the
objects combined and those skipped. Every output is written to a temporary
name beside its target and renamed into place, so an interrupted run leaves
the previous report or none, never half of one. An HTML directory is
replaced as a whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lambdacov import __version__
from lambdacov.combine import CombineResult

COVERAGE_INDEX = "coverage_index.html"  # coverage.py's own index, beside lambdacov's index.html
LIST_LIMIT = 1000  # at most this many missing/outside paths in the JSON document


@dataclass(frozen=True)
class FileRow:
    """One source file's line in the reports."""

    name: str  # as coverage.py names it (relative to the current directory when inside it)
    statements: int
    missing: int
    percent: float
    percent_display: str
    page: str | None  # coverage.py's HTML page for the file, when HTML was written


@dataclass(frozen=True)
class FunctionRow:
    """What one function ran: statements of the report's files it executed."""

    name: str
    objects: int
    files: int
    covered: int
    statements: int

    @property
    def percent(self) -> float:
        """Executed statements as a percentage of all the report's statements."""
        return 100.0 * self.covered / self.statements if self.statements else 100.0


@dataclass(frozen=True)
class Summary:
    """The numbers every report shows."""

    files: tuple[FileRow, ...]
    functions: tuple[FunctionRow, ...]
    statements: int
    missing: int
    percent: float  # coverage.py's total (statements and branches)
    percent_display: str
    branch: bool


@dataclass(frozen=True)
class ReportPlan:
    """Which reports to write, and where."""

    html: Path | None = None
    xml: Path | None = None
    json: Path | None = None  # None also when the JSON goes to stdout (the CLI prints it)
    lcov: Path | None = None
    markdown: Path | None = None
    data_file: Path | None = None
    title: str = "Lambda coverage"


@dataclass(frozen=True)
class Reports:
    """What was written, the summary, and the JSON document (for ``--json -``)."""

    summary: Summary
    document: dict[str, Any]
    written: tuple[Path, ...]
    notes: tuple[str, ...]


def _temporary_beside(target: Path, *, directory: bool = False) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        return Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    return Path(name)


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """A temporary path that becomes ``target`` only when the block succeeds."""
    temporary = _temporary_beside(target)
    try:
        yield temporary
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """A temporary directory that replaces ``target`` as a whole when the block succeeds."""
    temporary = _temporary_beside(target, directory=True)
    try:
        yield temporary
        temporary.chmod(0o755)
        old = None
        if target.exists():
            old = _temporary_beside(target, directory=True)
            old.rmdir()
            target.replace(old)
        temporary.replace(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _write_text(target: Path, text: str) -> Path:
    with atomic_file(target) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return target


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("lambdacov", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _markdown_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _function_rows(
    result: CombineResult, statements: dict[str, set[int]]
) -> tuple[FunctionRow, ...]:
    total = sum(len(lines) for lines in statements.values())
    covered: dict[str, dict[str, set[int]]] = {}
    for context, per_file in result.combined.executed_by_context().items():
        function = context.split("|", 1)[0]
        for path, bits in per_file.items():
            known = statements.get(path)
            if known:
                ran = {n for n in known if bits >> n & 1}
                covered.setdefault(function, {}).setdefault(path, set()).update(ran)
    names = sorted(set(result.objects_by_function) | set(covered))
    return tuple(
        FunctionRow(
            name=name,
            objects=result.objects_by_function.get(name, 0),
            files=sum(1 for lines in covered.get(name, {}).values() if lines),
            covered=sum(len(lines) for lines in covered.get(name, {}).values()),
            statements=total,
        )
        for name in names
    )


def _window(result: CombineResult) -> dict[str, str | None]:
    def text(moment: datetime | None) -> str | None:
        return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None

    return {"since": text(result.since), "until": text(result.until)}


def lambdacov_section(result: CombineResult, summary: Summary) -> dict[str, Any]:
    """lambdacov's part of the JSON document: functions, inputs, skipped objects, warnings."""
    return {
        "version": __version__,
        "source_root": str(result.source_root),
        "window": _window(result),
        "objects": {
            "listed": result.listed,
            "combined": len(result.inputs),
            "skipped": len(result.skipped),
            "downloaded": result.downloaded,
            "cache_hits": result.cache_hits,
            "bytes_downloaded": result.bytes_downloaded,
            "list_calls": result.list_calls,
        },
        "functions": {
            row.name: {
                "objects": row.objects,
                "files": row.files,
                "covered_lines": row.covered,
                "num_statements": row.statements,
                "percent_covered": round(row.percent, 2),
            }
            for row in summary.functions
        },
        "inputs": list(result.inputs),
        "skipped": [{"key": item.key, "reason": item.reason} for item in result.skipped],
        "warnings": {
            "mixed_line_and_branch_data": result.combined.mixed,
            "missing_files": list(result.missing_files[:LIST_LIMIT]),
            "missing_files_count": len(result.missing_files),
            "outside_source_root": list(result.outside_files[:LIST_LIMIT]),
            "outside_source_root_count": len(result.outside_files),
            "runtime_files_dropped": result.runtime_files,
        },
    }


def _empty_coverage_json(branch: bool) -> dict[str, Any]:
    import coverage

    return {
        "meta": {"format": 3, "version": coverage.__version__, "branch_coverage": branch},
        "files": {},
        "totals": {
            "covered_lines": 0,
            "num_statements": 0,
            "percent_covered": 100.0,
            "percent_covered_display": "100",
            "missing_lines": 0,
            "excluded_lines": 0,
        },
    }


def _coverage_json(cov: Any, workspace: Path, branch: bool) -> dict[str, Any] | None:
    """coverage.py's JSON report as a dict, or None when there is no data to report."""
    from coverage.exceptions import NoDataError

    try:
        cov.json_report(outfile=str(workspace / "coverage.json"))
    except NoDataError:
        return None
    document: dict[str, Any] = json.loads((workspace / "coverage.json").read_text("utf-8"))
    return document


def _load(data_path: Path) -> Any:
    """A Coverage object reporting on ``data_path``."""
    import coverage

    cov = coverage.Coverage(data_file=str(data_path), config_file=False)
    cov.set_option("report:ignore_errors", True)  # a local file that is not Python
    cov.load()
    return cov


def _coverage_html(cov: Any, directory: Path, title: str) -> bool:
    """Write coverage.py's HTML into ``directory``; False when there is no data to report."""
    from coverage.exceptions import NoDataError

    try:
        cov.html_report(directory=str(directory), show_contexts=True, title=title)
    except NoDataError:
        return False
    (directory / "index.html").replace(directory / COVERAGE_INDEX)
    return True


def _pages(directory: Path, names: list[str]) -> dict[str, str]:
    """Each file's page in coverage.py's HTML, by report name."""
    from coverage.files import flat_rootname

    pages = {}
    for name in names:
        page = flat_rootname(name) + ".html"
        if (directory / page).is_file():
            pages[name] = page
    return pages


class _HtmlProcess:
    """coverage.py's HTML report, written by a forked process while this one runs the JSON one.

    Each report analyses every source file again (coverage.py keeps no
    analysis between reports), and the two are about equal: on two cores they
    take the time of one. Where no process can be had (no ``fork``, other
    threads running, which forking would make unsafe), or when it fails, the
    report is written here.
    """

    NO_DATA = 3  # the process's exit code when there was nothing to report

    def __init__(self, pid: int) -> None:
        self._pid: int | None = pid

    @classmethod
    def start(cls, data_path: Path, directory: Path, title: str) -> _HtmlProcess | None:
        if threading.active_count() > 1 or not hasattr(os, "fork"):
            return None
        # Ctrl-C is held back across the fork: in the child it must land inside the
        # try below, never unwind the parent's stack (and its clean-ups) in the child.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            return None
        if pid:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            return cls(pid)
        code = 1
        try:  # the child: its own Coverage (an SQLite connection must not cross a fork)
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            code = 0 if _coverage_html(_load(data_path), directory, title) else cls.NO_DATA
        finally:
            os._exit(code)  # no exit handlers, no flush of the parent's buffers

    def wait(self) -> bool | None:
        """True when the report was written, False when there was no data, None if it failed."""
        if self._pid is None:
            return None
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        code = os.waitstatus_to_exitcode(status)
        return {0: True, self.NO_DATA: False}.get(code)

    def stop(self) -> None:
        if self._pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
            self._pid = None


def write_reports(result: CombineResult, plan: ReportPlan) -> Reports:
    """Compute the summary and write the planned reports; return them and the JSON document."""
    from coverage.files import relative_filename

    branch = result.combined.kind == "arcs"
    written: list[Path] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lambdacov-report-") as scratch:
        workspace = Path(scratch)
        data_path = result.combined.write(workspace / "report.coverage", only=result.reportable)
        with contextlib.ExitStack() as stack:
            directory = (
                None if plan.html is None else stack.enter_context(atomic_directory(plan.html))
            )
            html = (
                None if directory is None else _HtmlProcess.start(data_path, directory, plan.title)
            )
            if html is not None:
                stack.callback(html.stop)
            cov = _load(data_path)
            document = _coverage_json(cov, workspace, branch)
            has_data = document is not None
            if document is None:
                document = _empty_coverage_json(branch)
            measured = [p for p in result.combined.measured_files() if result.reportable(p)]
            names = {relative_filename(path): path for path in measured}
            statements = {
                names[name]: set(info["executed_lines"]) | set(info["missing_lines"])
                for name, info in document["files"].items()
                if name in names
            }
            pages = {}
            if directory is not None:
                # Compiled while the HTML process may still be at work.
                index = _environment().get_template("index.html.j2")
                written_html = html.wait() if html is not None else None
                if written_html is None and has_data:  # no process, or it failed: here
                    written_html = _coverage_html(cov, directory, plan.title)
                if written_html:
                    pages = _pages(directory, list(document["files"]))
            summary = _summary(result, document, statements, pages, branch)
            if directory is not None:
                _render_index(index, directory, result, summary, plan.title, has_coverage=has_data)
        if plan.html is not None:
            written.append(plan.html)
        for target, render in ((plan.xml, cov.xml_report), (plan.lcov, cov.lcov_report)):
            if target is not None and not has_data:
                notes.append(f"no coverage data to report: {target} not written")
            elif target is not None:
                with atomic_file(target) as temporary:
                    render(outfile=str(temporary))
                written.append(target)
    document["lambdacov"] = lambdacov_section(result, summary)
    written += _write_own(result, summary, document, plan)
    return Reports(summary, document, tuple(written), tuple(notes))


def _write_own(
    result: CombineResult, summary: Summary, document: dict[str, Any], plan: ReportPlan
) -> list[Path]:
    """The outputs lambdacov writes itself: JSON, markdown, the combined data file."""
    written = []
    if plan.json is not None:
        written.append(_write_text(plan.json, json.dumps(document, indent=2, sort_keys=True)))
    if plan.markdown is not None:
        text = (
            _environment()
            .get_template("summary.md.j2")
            .render(summary=summary, result=result, window=_window(result), cell=_markdown_cell)
        )
        written.append(_write_text(plan.markdown, text))
    if plan.data_file is not None:
        written.append(result.combined.write(plan.data_file))
    return written


def _summary(
    result: CombineResult,
    document: dict[str, Any],
    statements: dict[str, set[int]],
    pages: dict[str, str],
    branch: bool,
) -> Summary:
    rows = tuple(
        FileRow(
            name=name,
            statements=info["summary"]["num_statements"],
            missing=info["summary"]["missing_lines"],
            percent=info["summary"]["percent_covered"],
            percent_display=info["summary"]["percent_covered_display"],
            page=pages.get(name),
        )
        for name, info in sorted(document["files"].items())
    )
    totals = document["totals"]
    return Summary(
        files=rows,
        functions=_function_rows(result, statements),
        statements=totals["num_statements"],
        missing=totals["missing_lines"],
        percent=totals["percent_covered"],
        percent_display=totals["percent_covered_display"],
        branch=branch,
    )


def _render_index(
    template: Any,
    directory: Path,
    result: CombineResult,
    summary: Summary,
    title: str,
    *,
    has_coverage: bool,
) -> None:
    html = template.render(
        title=title,
        summary=summary,
        result=result,
        window=_window(result),
        coverage_index=COVERAGE_INDEX if has_coverage else None,
        quote=urllib.parse.quote,
        version=__version__,
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    (directory / "index.html").write_text(html, encoding="utf-8")
