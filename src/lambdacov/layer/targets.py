"""Which Lambda runtimes a layer can target, and what each one needs from a wheel."""

from __future__ import annotations

import platform
import re
import sys
from dataclasses import dataclass

from lambdacov.errors import UsageError

# The one list of the Lambda Python runtimes lambdacov supports: build-layer,
# publish-layer, attach, doctor and the layer names all read it (through
# SUPPORTED_PYTHONS and conventions.PYTHON_RUNTIMES). Each maps to the glibc of
# the runtime's OS: python3.11 runs on Amazon Linux 2 (glibc 2.26), python3.12
# and later on Amazon Linux 2023 (glibc 2.34). A manylinux wheel built for a
# newer glibc would fail to load its C tracer. python3.10 and older are not
# here: Lambda deprecates them (python3.10 on 2026-10-31), and every command
# refuses them as it refuses any other runtime.
_GLIBC_BY_PYTHON: dict[str, tuple[int, int]] = {
    "3.11": (2, 26),
    "3.12": (2, 34),
    "3.13": (2, 34),
    "3.14": (2, 34),
}
SUPPORTED_PYTHONS: tuple[str, ...] = tuple(_GLIBC_BY_PYTHON)

# Lambda's architecture names, and the machine name wheels and .so files use.
_MACHINE_BY_ARCH: dict[str, str] = {"x86_64": "x86_64", "arm64": "aarch64"}
SUPPORTED_ARCHS: tuple[str, ...] = tuple(_MACHINE_BY_ARCH)
_ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "arm64": "arm64", "aarch64": "arm64"}

# The legacy manylinux names and the glibc version each one stands for (PEP 600).
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_PERENNIAL_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)")


@dataclass(frozen=True)
class Target:
    """A Lambda runtime to build for: Python ``3.X`` and Lambda architecture name."""

    python: str
    arch: str

    @property
    def minor(self) -> int:
        """The X of 3.X."""
        return int(self.python.split(".")[1])

    @property
    def cp_tag(self) -> str:
        """The interpreter and ABI tag of the target, e.g. ``cp312``."""
        return f"cp3{self.minor}"

    @property
    def machine(self) -> str:
        """The machine name in wheel platform tags and .so names (``aarch64`` for arm64)."""
        return _MACHINE_BY_ARCH[self.arch]

    @property
    def glibc(self) -> tuple[int, int]:
        """The glibc version of the Lambda runtime's operating system."""
        return _GLIBC_BY_PYTHON[self.python]

    @property
    def runtime(self) -> str:
        """Lambda's runtime identifier, e.g. ``python3.12``."""
        return f"python{self.python}"

    def accepts_platform(self, platform: str) -> bool:
        """Whether a wheel platform tag such as ``manylinux_2_17_x86_64`` runs on this target."""
        prefix, separator, machine = platform.rpartition(f"_{self.machine}")
        if not separator or machine or not prefix:
            return False
        if prefix in _LEGACY_MANYLINUX:
            glibc = _LEGACY_MANYLINUX[prefix]
        elif match := _PERENNIAL_MANYLINUX.fullmatch(prefix):
            glibc = (int(match.group(1)), int(match.group(2)))
        else:
            return False  # musllinux, linux_x86_64 (not portable), other systems
        return glibc <= self.glibc

    def accepts_tag(self, interpreter: str, abi: str, platform: str) -> bool:
        """Whether one wheel tag triple fits this target's CPython ABI and platform."""
        return interpreter == self.cp_tag and abi == self.cp_tag and self.accepts_platform(platform)

    def pip_platforms(self) -> list[str]:
        """The ``--platform`` values to give ``pip download`` for this target."""
        platforms = [f"manylinux2014_{self.machine}", f"manylinux_2_17_{self.machine}"]
        if self.glibc >= (2, 28):
            platforms.append(f"manylinux_2_28_{self.machine}")
        return platforms


def host_python() -> str:
    """The ``3.X`` version of the interpreter running lambdacov."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def host_arch() -> str:
    """This machine's architecture under Lambda's name (``x86_64`` or ``arm64``)."""
    return "arm64" if _ARCH_ALIASES.get(platform.machine()) == "arm64" else "x86_64"


def parse_target(python: str, arch: str) -> Target:
    """Validate the user's Python version and architecture and return the target.

    Python may be written ``3.12`` or as Lambda's runtime name ``python3.12``;
    the architecture as Lambda names it (``x86_64``, ``arm64``) or as
    ``aarch64``/``amd64``.
    """
    version = python.strip().removeprefix("python")
    if version not in _GLIBC_BY_PYTHON:
        raise UsageError(
            f"unsupported Python version {python!r}",
            f"use one of {', '.join(SUPPORTED_PYTHONS)} (the Lambda runtime's version)",
        )
    canonical_arch = _ARCH_ALIASES.get(arch.strip().lower())
    if canonical_arch is None:
        raise UsageError(
            f"unsupported architecture {arch!r}",
            f"use one of {', '.join(SUPPORTED_ARCHS)} (the function's Lambda architecture)",
        )
    return Target(python=version, arch=canonical_arch)
