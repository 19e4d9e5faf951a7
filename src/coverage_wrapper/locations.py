"""Where the layer keeps its files: the spool's root and the extension's FIFO in it.

The runtime, the extension (a shell script that finds the same paths by the
same rules) and its final pass agree on these through the environment alone.
The runtime reads them as it starts: so this module imports nothing but ``os``.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not even collections is imported (see above)
if TYPE_CHECKING:
    from collections.abc import Mapping

SPOOL_NAME = "lambdacov"
FIFO_NAME = "extension.fifo"


def spool_root(environ: Mapping[str, str]) -> str:
    """``COVERAGE_SPOOL_DIR``, else ``$TMPDIR/lambdacov`` (``/tmp/lambdacov`` in Lambda).

    The value is not validated here: :class:`~coverage_wrapper.models.CoverageConfig`
    refuses a relative directory, and :meth:`~coverage_wrapper.spool.SpoolDirectory.prepare`
    one that cannot be used.
    """
    spool = environ.get("COVERAGE_SPOOL_DIR", "").strip()
    if spool:
        return spool
    tmp = environ.get("TMPDIR", "").strip() or "/tmp"  # noqa: S108 - Lambda's one writable directory
    return os.path.join(tmp, SPOOL_NAME)  # noqa: PTH118 - pathlib is not imported here
