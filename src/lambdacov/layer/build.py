"""Building the lambdacov layer zip for one Lambda runtime and architecture.

The layer, as Lambda unpacks it at /opt::

    python/coverage/...               coverage.py from its manylinux wheel, C tracer included
    python/coverage-X.dist-info/...
    python/coverage_wrapper/...       the runtime package
    python/coverage_wrapper/_layer.json   what was built, and a hash of everything else
    lambdacov-wrapper                 the AWS_LAMBDA_EXEC_WRAPPER script
    extensions/lambdacov              the external extension that delivers the spooled data
                                      after each response and at SHUTDOWN

with .pyc files compiled by the target Python version beside every .py file.
The zip is reproducible (after chalice's packager): the same inputs give the
same bytes, so its sha256 identifies its content.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from lambdacov import __version__
from lambdacov.errors import BuildError, UsageError
from lambdacov.layer import bytecode, wheels
from lambdacov.layer.targets import Target, parse_target
from lambdacov.layer.zipfile_repro import (
    EXECUTABLE_MODE,
    FILE_MODE,
    ZipEntry,
    content_hash,
    write_reproducible_zip,
)

# Lambda's quotas: a zip uploaded directly in the API call, and a function's
# code plus all its layers once unzipped.
MAX_ZIP_BYTES = 50 * 1024 * 1024
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024

RUNTIME_PACKAGE = "coverage_wrapper"
MANIFEST_NAME = f"python/{RUNTIME_PACKAGE}/_layer.json"
_SITE = "python"  # Lambda puts /opt/python on sys.path for every Python runtime
_RUNTIME_ROOT = "/opt/python"
# Scripts Lambda executes directly; their names in the package's files/ directory.
_LAYER_SCRIPTS = ("lambdacov-wrapper", "extensions/lambdacov")


@dataclass(frozen=True)
class LayerBuild:
    """What ``build_layer`` wrote: where, for which runtime, and how to recognise it."""

    path: Path
    python: str
    arch: str
    coverage_version: str
    coverage_wheel: str
    coverage_wheel_sha256: str
    wheel_source: str  # "wheel-dir", "cache", "download" or "installed"
    sha256: str  # of the zip file's bytes
    content_hash: str  # "sha256:..." over the entries, also in the manifest
    size_bytes: int
    unzipped_bytes: int
    entries: int  # files in the zip, directory entries not counted
    precompiled: bool
    warnings: tuple[str, ...]
    format: str = "zip"  # "zip", or "dir": the layer's files unpacked, for a container image

    @property
    def runtime(self) -> str:
        """The Lambda runtime this layer is compatible with, e.g. ``python3.12``."""
        return f"python{self.python}"

    def to_dict(self) -> dict[str, object]:
        """The fields as JSON-ready values (the ``--json`` document)."""
        document = asdict(self)
        document["path"] = str(self.path)
        document["warnings"] = list(self.warnings)
        document["runtime"] = self.runtime
        return document


#: What build-layer can write: the zip Lambda publishes as a layer, or the same files
#: unpacked in a directory, laid out as /opt, to copy into a container image.
FORMATS: tuple[str, ...] = ("zip", "dir")


def default_output_name(python: str, arch: str, layout: str = "zip") -> str:
    """``lambdacov-layer-py312-x86_64.zip`` (or without ``.zip`` for a directory)."""
    target = parse_target(python, arch)
    stem = f"lambdacov-layer-py3{target.minor}-{target.arch}"
    return stem if layout == "dir" else f"{stem}.zip"


def build_layer(
    python: str,
    arch: str,
    output: Path,
    *,
    wheel_dir: Path | None = None,
    cache_dir: Path | None = None,
    interpreter: Path | None = None,
    precompile: bool = True,
    layout: str = "zip",
    max_zip_bytes: int = MAX_ZIP_BYTES,
    max_unzipped_bytes: int = MAX_UNZIPPED_BYTES,
    download_timeout: float = wheels.DOWNLOAD_TIMEOUT_SECONDS,
) -> LayerBuild:
    """Build the layer zip for Lambda's ``python{python}`` runtime on ``arch`` at ``output``.

    The coverage.py wheel is the version installed beside lambdacov, taken
    from ``wheel_dir`` when given (nothing is downloaded then), else from
    ``cache_dir`` (default: the user's cache), else downloaded with pip and
    cached. ``interpreter`` names the Python used to precompile .pyc files;
    by default one of the target version is looked up, and without one the
    build stops with a ``BuildError`` naming the fix: a layer without .pyc
    compiles its Python files again at every cold start, which nobody should
    get by accident. ``precompile=False`` (``--no-compile``) builds it anyway,
    without looking for an interpreter, and the result carries a warning with
    the cost.

    ``layout="dir"`` writes the same files unpacked into the directory
    ``output`` (modes kept), laid out as Lambda unpacks a layer at /opt, for
    ``COPY`` into a container image; an existing directory is replaced only
    when an earlier build wrote it. The result's sha256 is still the zip's.

    The zip (or directory) is written beside ``output`` and moved into
    place only when complete, so a failed build leaves no file behind. Raises
    ``UsageError`` for bad arguments and ``BuildError`` when the layer cannot
    be built as asked, including when it exceeds Lambda's size limits.
    """
    target = parse_target(python, arch)
    output = _checked_output(output, layout)
    coverage_version = importlib.metadata.version("coverage")
    runtime_dir = _runtime_package_dir()
    # Before any download: a missing or wrong interpreter fails fast.
    compiler = _compiler(interpreter, target) if precompile else _no_compiler(interpreter)
    warnings: list[str] = [] if precompile else [bytecode.not_compiled_warning(target)]

    with tempfile.TemporaryDirectory(prefix="lambdacov-layer-") as scratch_name:
        scratch = Path(scratch_name)
        wheel = wheels.resolve_wheel(
            target,
            coverage_version,
            wheel_dir=wheel_dir,
            cache_dir=cache_dir if cache_dir is not None else wheels.default_cache_dir(),
            scratch=scratch,
            download_timeout=download_timeout,
        )
        site = scratch / "layer" / _SITE
        _install_wheel(wheel.path, site)
        _copy_runtime_package(runtime_dir, site / RUNTIME_PACKAGE)

        if compiler is not None:
            bytecode.compile_tree(compiler, site, _RUNTIME_ROOT)

        entries = [*_site_entries(site), *_layer_script_entries()]

    layer_hash = content_hash(entries)
    entries.append(
        _manifest_entry(
            target, coverage_version, wheel, layer_hash, precompiled=compiler is not None
        )
    )
    unzipped_bytes = sum(len(entry.data) for entry in entries)
    if unzipped_bytes > max_unzipped_bytes:
        raise BuildError(
            f"the layer is {_megabytes(unzipped_bytes)} unzipped, over Lambda's limit of "
            f"{_megabytes(max_unzipped_bytes)} for a function and all its layers",
            "the layer should be a few MB: check what the wheel and coverage_wrapper contain",
        )

    if layout == "dir":
        zip_sha256, size_bytes = _write_directory(output, entries, max_zip_bytes)
    else:
        zip_sha256, size_bytes = _write_atomically(output, entries, max_zip_bytes)
    return LayerBuild(
        path=output,
        python=target.python,
        arch=target.arch,
        coverage_version=coverage_version,
        coverage_wheel=wheel.path.name,
        coverage_wheel_sha256=wheel.sha256,
        wheel_source=wheel.source,
        sha256=zip_sha256,
        content_hash=layer_hash,
        size_bytes=size_bytes,
        unzipped_bytes=unzipped_bytes,
        entries=len(entries),
        precompiled=compiler is not None,
        warnings=tuple(warnings),
        format=layout,
    )


def _checked_output(output: Path, layout: str) -> Path:
    if layout not in FORMATS:
        raise UsageError(
            f"unknown layer format {layout!r}",
            f"use one of {', '.join(FORMATS)} (dir: the layer's files, for a container image)",
        )
    output = output.expanduser().absolute()
    if layout == "dir":
        return _checked_directory(output)
    if output.suffix.lower() != ".zip":
        raise UsageError(
            f"the layer output {output} must be a .zip file",
            f"name it like {output.with_suffix('.zip').name}",
        )
    if not output.parent.is_dir():
        raise UsageError(
            f"the directory of the layer output {output} does not exist",
            f"create {output.parent} first, or choose another --output",
        )
    if output.is_dir():
        raise UsageError(
            f"the layer output {output} is a directory", "give a file name ending in .zip"
        )
    return output


def _checked_directory(output: Path) -> Path:
    if not output.parent.is_dir():
        raise UsageError(
            f"the directory of the layer output {output} does not exist",
            f"create {output.parent} first, or choose another --output",
        )
    if output.exists() and not output.is_dir():
        raise UsageError(
            f"the layer output {output} is a file, and --format dir writes a directory",
            "choose another --output",
        )
    if output.is_dir() and any(output.iterdir()) and not _is_layer_directory(output):
        raise UsageError(
            f"{output} holds files that lambdacov did not write",
            "give a new or empty directory, or one an earlier `build-layer --format dir` wrote",
        )
    return output


def _is_layer_directory(path: Path) -> bool:
    """Whether ``path`` is a layer directory written by an earlier build (it has the manifest)."""
    return (path / MANIFEST_NAME).is_file() and not (path / MANIFEST_NAME).is_symlink()


def _compiler(interpreter: Path | None, target: Target) -> Path:
    if interpreter is None:
        found = bytecode.find_interpreter(target.python)
        if found is None:
            raise bytecode.missing_interpreter_error(target)
        return found
    # A .pyc from another version would be silently ignored in Lambda: refuse it here.
    if not bytecode.reports_version(interpreter, target.python):
        raise UsageError(
            f"{interpreter} is not a working Python {target.python} interpreter",
            f"give the path of a python{target.python}, or leave it out to find one",
        )
    return interpreter


def _no_compiler(interpreter: Path | None) -> Path | None:
    """None, the compiler of a build without .pyc; refuses an interpreter given anyway."""
    if interpreter is not None:
        raise UsageError(
            f"an interpreter ({interpreter}) was given to precompile, and precompiling is off",
            "leave out the interpreter, or precompile (leave out --no-compile)",
        )
    return None


def _runtime_package_dir() -> Path:
    # find_spec locates the package without running its __init__ in the CLI.
    spec = importlib.util.find_spec(RUNTIME_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        if (Path(location) / "__init__.py").is_file():
            return Path(location)
    raise BuildError(
        f"the {RUNTIME_PACKAGE} package is not installed beside lambdacov (or has no __init__.py)",
        "reinstall lambdacov: the runtime package ships in the same wheel",
    )


def _install_wheel(wheel: Path, site: Path) -> None:
    """Unpack the files a wheel would put in site-packages into ``site``."""
    for name, data in wheels.wheel_members(wheel):
        destination = _site_path(name)
        if destination is None:
            continue
        path = site / destination
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _site_path(name: str) -> str | None:
    """Where a wheel member goes under site-packages, or None to leave it out."""
    parts = PurePosixPath(name).parts
    if parts[0].endswith(".data"):
        # Only the library schemes belong in a layer; scripts/headers/data would
        # go elsewhere in a real install and Lambda never runs them.
        if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
            return None
        parts = parts[2:]
    if name.endswith((".pyc", ".pyo")):
        return None  # compiled again below, by the target version
    if len(parts) == 1 and name.endswith(".pth"):
        # coverage's a1_coverage.pth (process-startup hook) is read only in a
        # site directory; /opt/python is not one, so it would be dead weight.
        return None
    return "/".join(parts)


def _copy_runtime_package(source: Path, destination: Path) -> None:
    for path in _runtime_files(source):
        target = destination / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())


def _runtime_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).parts
        # Bytecode from the development tree would be for the wrong Python or
        # stale; dotfiles (editor swap files, .DS_Store) would make the layer
        # depend on whoever built it.
        if "__pycache__" in relative or any(part.startswith(".") for part in relative):
            continue
        if path.is_file() and path.suffix not in (".pyc", ".pyo"):
            yield path


def _site_entries(site: Path) -> Iterator[ZipEntry]:
    for path in sorted(site.rglob("*")):
        if path.is_file():
            relative = path.relative_to(site).as_posix()
            # The C tracer is a shared library: executable, like pip installs it.
            mode = EXECUTABLE_MODE if path.suffix == ".so" else FILE_MODE
            yield ZipEntry(f"{_SITE}/{relative}", path.read_bytes(), mode)


def _layer_script_entries() -> Iterator[ZipEntry]:
    files = importlib.resources.files("lambdacov.layer") / "files"
    for name in _LAYER_SCRIPTS:
        resource = files
        for part in name.split("/"):
            resource = resource / part
        if not resource.is_file():
            raise BuildError(
                f"lambdacov's layer file {name} is missing from the installation",
                "reinstall lambdacov",
            )
        yield ZipEntry(name, resource.read_bytes(), EXECUTABLE_MODE)


def _manifest_entry(
    target: Target,
    coverage_version: str,
    wheel: wheels.ResolvedWheel,
    layer_hash: str,
    *,
    precompiled: bool,
) -> ZipEntry:
    manifest = {
        "lambdacov_version": __version__,
        "coverage_version": coverage_version,
        "coverage_wheel": wheel.path.name,
        "coverage_wheel_sha256": wheel.sha256,
        "python": target.python,
        "arch": target.arch,
        "precompiled": precompiled,
        "content_hash": layer_hash,
    }
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return ZipEntry(MANIFEST_NAME, data, FILE_MODE)


def _write_atomically(output: Path, entries: list[ZipEntry], max_zip_bytes: int) -> tuple[str, int]:
    """Write the zip beside ``output`` and rename it into place; return (sha256, size)."""
    descriptor, temporary_name = tempfile.mkstemp(
        prefix=f".{output.name}.", suffix=".tmp", dir=output.parent
    )
    os.close(descriptor)
    temporary = Path(temporary_name)
    try:
        write_reproducible_zip(temporary, entries)
        size = temporary.stat().st_size
        _check_zip_size(size, max_zip_bytes)
        sha256 = hashlib.sha256(temporary.read_bytes()).hexdigest()
        # mkstemp creates 0600; a layer zip is not a secret.
        temporary.chmod(0o644)
        temporary.replace(output)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return sha256, size


def _write_directory(output: Path, entries: list[ZipEntry], max_zip_bytes: int) -> tuple[str, int]:
    """Unpack ``entries`` into the directory ``output``; return the (sha256, size) of their zip.

    The files are written to a new directory beside ``output`` and renamed into
    place; an earlier layer directory there is moved aside first and removed
    once the new one is in place.
    """
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent) as work:
        # The zip's hash identifies the content: the same as `build-layer` without --format dir.
        zipped = Path(work) / "layer.zip"
        write_reproducible_zip(zipped, entries)
        size = zipped.stat().st_size
        _check_zip_size(size, max_zip_bytes)
        sha256 = hashlib.sha256(zipped.read_bytes()).hexdigest()
        staged = Path(work) / "layer"
        for entry in entries:
            path = staged / entry.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(entry.data)
            path.chmod(entry.mode)
        for directory in sorted(staged.rglob("*")):
            if directory.is_dir():
                directory.chmod(0o755)
        staged.chmod(0o755)
        old = Path(work) / "previous"
        if output.is_dir():
            output.replace(old)  # an earlier layer directory (checked), or an empty one
        staged.replace(output)
    return sha256, size


def _check_zip_size(size: int, max_zip_bytes: int) -> None:
    if size > max_zip_bytes:
        raise BuildError(
            f"the layer zip is {_megabytes(size)}, over Lambda's limit of "
            f"{_megabytes(max_zip_bytes)} for a direct upload",
            "the layer should be a few MB: check what the wheel and coverage_wrapper contain",
        )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
