"""``lambdacov doctor``: every diagnosis of the troubleshooting guide, as checks with stable codes.

Each check is a small function that takes clients and returns a frozen
:class:`Check`; :func:`run_doctor` runs them for the selected functions and
returns a :class:`DoctorReport`. Nothing here prints: the CLI renders.
"""

from __future__ import annotations

from lambdacov.doctor.health import validate_health_document
from lambdacov.doctor.model import AREAS, CODES, Check, DoctorReport, Status
from lambdacov.doctor.runner import DoctorRequest, run_doctor

__all__ = [
    "AREAS",
    "CODES",
    "Check",
    "DoctorReport",
    "DoctorRequest",
    "Status",
    "run_doctor",
    "validate_health_document",
]
