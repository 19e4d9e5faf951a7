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
import stat
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coverage_wrapper.datafiles import temporary_prefix
from lambdacov import __version__
from lambdacov.combine.merge import CombineResult
from lambdacov.combine.versions import ChangedFile
from lambdacov.errors import UsageError
from lambdacov.untrusted import markdown_code, markdown_text, printable

COVERAGE_INDEX = "coverage_index.html"  # coverage.py's own index, beside lambdacov's index.html
LIST_LIMIT = 1000  # at most this many missing/outside paths in the JSON document


@dataclass(frozen=True)
class FileRow:
    """One source file's line in the reports."""

    name: str  # relative to the source root when under it (see report_name)
    statements: int
    missing: int
    percent: float
    percent_display: str
    page: str | None  # coverage.py's HTML page for the file, when HTML was written
    # The file also ran as other code (see combine.versions): what of it is not shown
    # as recorded, e.g. "3 lines carried from 1 other version"; "" when it did not.
    versions: str = ""


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


# How the CLI names each output of a ReportPlan, for messages about a path.
OUTPUT_OPTIONS = {
    "html": "--html",
    "xml": "--xml",
    "json": "--json",
    "lcov": "--lcov",
    "markdown": "--markdown",
    "data_file": "--data-file",
}


def _real(path: Path) -> Path:
    """``path`` with symbolic links and ``..`` resolved, as far as it exists."""
    return Path(os.path.realpath(path))


def check_plan(plan: ReportPlan) -> None:
    """Refuse outputs that could not be written or would replace what is not lambdacov's.

    Checked before any work: an HTML directory holding other files (see
    :func:`check_directory_target`), a file output naming a directory, a file
    output inside the HTML directory (the next report would refuse to replace
    it), or two outputs at one path.
    """
    seen: dict[Path, str] = {}
    html = _real(plan.html) if plan.html is not None else None
    for name, option in OUTPUT_OPTIONS.items():
        target: Path | None = getattr(plan, name)
        if target is None:
            continue
        absolute = _real(target)
        if absolute in seen:
            raise ReportTargetError(
                f"{seen[absolute]} and {option} both name {target}", "give each output its own path"
            )
        seen[absolute] = option
        if name == "html":
            if Path.cwd().resolve().is_relative_to(absolute):
                raise ReportTargetError(
                    f"{option} {target} is the current directory or holds it",
                    f"give {option} a directory of its own, e.g. htmlcov",
                )
            check_directory_target(target, option)
            continue
        check_file_target(target, option)
        if html is not None and absolute.is_relative_to(html):
            raise ReportTargetError(
                f"{option} {target} is inside the --html directory, which is replaced as a whole",
                f"write {option} outside {plan.html}",
            )


@dataclass(frozen=True)
class Reports:
    """What was written, the summary, and the JSON document (for ``--json -``)."""

    summary: Summary
    document: dict[str, Any]
    written: tuple[Path, ...]
    notes: tuple[str, ...]


# Written into every HTML report directory: the files lambdacov put there. Only a
# directory that holds these files and nothing else is ever replaced.
REPORT_MANIFEST = ".lambdacov-report.json"


class ReportTargetError(UsageError):
    """An output path lambdacov will not write to: it would replace what is not its own."""

    slug = "report-target"


def _temporary_beside(target: Path, *, directory: bool = False) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = temporary_prefix(target)
    if directory:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    handle, temporary = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
    os.close(handle)
    return Path(temporary)


def _umask() -> int:
    """The process's umask (read by setting it and putting it back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish_mode(temporary: Path, target: Path, default: int) -> None:
    """Give a temporary output the mode the target has, or the umask's default for a new one.

    ``mkstemp`` creates files readable by their owner only; a report must come
    out as any other file the user writes (served by a web server, read by CI).
    """
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mode = default & ~_umask()
    temporary.chmod(mode)


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """A temporary path that becomes ``target`` only when the block succeeds.

    A symbolic link is written through: the file it names is replaced, the link
    stays. A target that is not a regular file (``/dev/stdout``, ``/dev/null``, a
    pipe) is written to directly, as any other program would: renaming a file
    over it would replace the device or the pipe itself.
    """
    target = Path(os.path.realpath(target))
    if target.exists() and not target.is_file():
        yield target
        return
    temporary = _temporary_beside(target)
    try:
        yield temporary
        _publish_mode(temporary, target, 0o666)
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


def check_file_target(target: Path, option: str) -> None:
    """Refuse an output file path that names a directory, or where nothing can be written.

    Checked before any work, by making and removing a file where the report's
    temporary file will go, so that a read-only or missing place fails at once,
    naming the option.
    """
    if target.is_dir():
        raise ReportTargetError(
            f"{option} {target} is a directory", f"give {option} a file name, e.g. {target}/report"
        )
    real = Path(os.path.realpath(target))
    if real.exists() and not real.is_file():
        return  # a device or a pipe: written to directly
    place = real.parent
    while not place.exists() and place != place.parent:
        place = place.parent  # the folders that will be made
    try:
        handle, probe = tempfile.mkstemp(prefix=".lambdacov-probe-", dir=place)
    except OSError as error:
        raise ReportTargetError(
            f"{option} {target}: cannot write in {place}: {error.strerror or error}",
            f"give {option} a path in a writable folder",
        ) from error
    os.close(handle)
    Path(probe).unlink()


def _foreign_entries(directory: Path) -> list[str]:
    """What ``directory`` holds that lambdacov did not write there, as relative paths."""
    try:
        manifest = json.loads((directory / REPORT_MANIFEST).read_text("utf-8"))
        ours = {str(name) for name in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        ours = set()
    foreign = []
    for root, folders, files in os.walk(directory):
        base = Path(root).relative_to(directory)
        foreign += [path for name in files if (path := (base / name).as_posix()) not in ours]
        kept = []
        for name in folders:
            path = (base / name).as_posix()
            if any(mine.startswith(path + "/") for mine in ours):
                kept.append(name)
            else:
                foreign.append(path + "/")
        folders[:] = kept  # os.walk descends only into these
    return sorted(foreign)


def check_directory_target(target: Path, option: str = "--html") -> None:
    """Refuse a directory to replace unless it is empty or an earlier report of lambdacov's.

    A report directory is replaced as a whole, so anything else in it would be
    deleted: the source tree, the working directory, another tool's output.
    """
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        raise ReportTargetError(
            f"{option} {target} is not a directory: it will not be replaced",
            f"give {option} the name of a new or empty directory",
        )
    foreign = _foreign_entries(target)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise ReportTargetError(
            f"{option} {target} holds files lambdacov did not write "
            f"({printable(foreign[0])}{more}): it will not be replaced",
            f"give {option} a new or empty directory, or one an earlier report was written to",
        )


def _write_manifest(directory: Path) -> None:
    files = [
        (Path(root).relative_to(directory) / name).as_posix()
        for root, _, names in os.walk(directory)
        for name in names
    ]
    (directory / REPORT_MANIFEST).write_text(
        json.dumps(
            {"generator": f"lambdacov {__version__}", "files": sorted([*files, REPORT_MANIFEST])},
            indent=1,
        ),
        encoding="utf-8",
    )


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """A temporary directory that replaces ``target`` as a whole when the block succeeds.

    ``target`` must be absent, empty, or an earlier report directory holding
    only what lambdacov wrote there (its manifest says what); anything else is
    refused with :class:`ReportTargetError`, before and after the block.
    """
    target = Path(os.path.abspath(target))  # noqa: PTH100 - its parent must be a real folder
    check_directory_target(target)
    temporary = _temporary_beside(target, directory=True)
    try:
        yield temporary
        _write_manifest(temporary)
        _publish_mode(temporary, target, 0o777)
        check_directory_target(target)  # again: the block may have taken a while
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

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("lambdacov", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    # Text from objects, shown with its control characters escaped (HTML escaping
    # alone leaves a right-to-left override free to reorder what is read).
    environment.filters["printable"] = printable
    return environment


def _is_step_summary(target: Path) -> bool:
    """True when ``target`` is the file GitHub Actions collects this step's summary from."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return False
    try:
        return Path(summary).samefile(target)
    except OSError:
        return Path(summary).absolute() == target.absolute()


def _write_markdown(target: Path, text: str) -> Path:
    """The summary replaces ``target``, or is appended when it is the step summary.

    Every writer of ``$GITHUB_STEP_SUMMARY`` appends (GitHub's documented use is
    ``>>``): earlier lines of the step stay, and the file keeps its mode.
    """
    if not _is_step_summary(target):
        return _write_text(target, text)
    with target.open("a", encoding="utf-8") as stream:
        if os.fstat(stream.fileno()).st_size:  # a file with earlier lines (not a pipe)
            text = "\n" + text
        stream.write(text)
    return target


def _function_rows(
    result: CombineResult, statements: dict[str, set[int]]
) -> tuple[FunctionRow, ...]:
    total = sum(len(lines) for lines in statements.values())
    covered: dict[str, dict[str, set[int]]] = {}
    for context, per_file in result.combined.executed_by_context().items():
        function = context.split("|", 1)[0]
        for path, lines in per_file.items():
            known = statements.get(path)
            if known:
                covered.setdefault(function, {}).setdefault(path, set()).update(known & lines)
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
        "from_snapshots": dict(sorted(result.from_snapshots.items())),
        "before_deploy": list(result.before_deploy[:LIST_LIMIT]),
        "before_deploy_count": len(result.before_deploy),
        "changed_files": [
            {
                "path": item.path,
                "sha256": item.local,
                "objects": item.shown_objects,
                "other_versions": dict(sorted(item.versions.items())),
                "objects_left_out": item.left_out,
                "carried_lines": item.carried_lines,
                "versions_without_snapshot": list(item.no_snapshot),
            }
            for item in result.changed
        ],
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


def _load(data_path: Path, source_root: Path) -> Any:
    """A Coverage object reporting on ``data_path``, naming files relative to ``source_root``."""
    import coverage

    cov = coverage.Coverage(data_file=str(data_path), config_file=False)
    cov.set_option("report:ignore_errors", True)  # a local file that is not Python
    cov.load()
    _name_relative_to(source_root)
    return cov


def _name_relative_to(source_root: Path) -> None:
    """Make coverage.py's reports name files relative to ``source_root``.

    coverage.py names a file relative to the directory current when a
    Coverage object is made (``coverage.files.set_relative_directory``). The
    reports are of the functions' code under ``--source-root``: they must read
    the same from any directory combine runs in (a CI step, a Makefile in a
    parent folder), so that directory is set to the source root, exactly as
    coverage.py itself sets it, once the object exists. A file outside the
    root (a source snapshot) keeps its absolute name, as coverage.py does.
    """
    from coverage import files

    directory = os.path.normcase(str(source_root))
    files.RELATIVE_DIR = directory if directory.endswith(os.sep) else directory + os.sep
    files.CANONICAL_FILENAME_CACHE = {}


def report_name(path: str, source_root: Path) -> str:
    """The name the reports give the measured file ``path``: relative to the source root."""
    directory = os.path.normcase(str(source_root)).rstrip(os.sep) + os.sep
    return path[len(directory) :] if os.path.normcase(path).startswith(directory) else path


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


def _die_with_parent(parent: int) -> None:
    """In a forked process: be killed when ``parent`` dies, whatever kills it (Linux).

    The parent stops this process on every exit it sees (an error, Ctrl-C,
    SIGTERM); a SIGKILL it cannot see must not leave this one writing on.
    """
    if sys.platform == "linux":
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


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
    def start(
        cls, data_path: Path, source_root: Path, directory: Path, title: str
    ) -> _HtmlProcess | None:
        if threading.active_count() > 1 or not hasattr(os, "fork"):
            return None
        # Ctrl-C and SIGTERM are held back across the fork: in the child they must land
        # inside the try below, never unwind the parent's stack (and its clean-ups) there.
        parent = os.getpid()
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
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
            _die_with_parent(parent)
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            code = (
                0
                if _coverage_html(_load(data_path, source_root), directory, title)
                else cls.NO_DATA
            )
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
    """Compute the summary and write the planned reports; return them and the JSON document.

    Every report names files relative to the source root, whatever the current directory.
    """
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
                None
                if directory is None
                else _HtmlProcess.start(data_path, result.source_root, directory, plan.title)
            )
            if html is not None:
                stack.callback(html.stop)
            cov = _load(data_path, result.source_root)
            document = _coverage_json(cov, workspace, branch)
            has_data = document is not None
            if document is None:
                document = _empty_coverage_json(branch)
            measured = [p for p in result.combined.measured_files() if result.reportable(p)]
            names = {report_name(path, result.source_root): path for path in measured}
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
            .render(
                summary=summary,
                result=result,
                window=_window(result),
                text=markdown_text,
                code=markdown_code,
            )
        )
        written.append(_write_markdown(plan.markdown, text))
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
    changed = {report_name(item.path, result.source_root): item for item in result.changed}
    rows = tuple(
        FileRow(
            name=name,
            statements=info["summary"]["num_statements"],
            missing=info["summary"]["missing_lines"],
            percent=info["summary"]["percent_covered"],
            percent_display=info["summary"]["percent_covered_display"],
            page=pages.get(name),
            versions=_versions_note(changed[name]) if name in changed else "",
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


def _versions_note(item: ChangedFile) -> str:
    """What a file's other versions add to the report, in a few words."""
    versions = f"{len(item.versions)} other version(s)"
    if item.carried:
        note = f"{item.carried_lines} line(s) carried from {versions}"
        if item.left_out:
            note += f"; {item.left_out} object(s) without a snapshot left out"
        return note
    return f"{item.left_out} object(s) of {versions} left out"


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
