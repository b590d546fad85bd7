"""The hardware-in-loop matrix: targets x runtimes x packages x checks.

>>> from edgefleet.hardware.hil import MatrixSpec, run_matrix
>>> result = run_matrix(MatrixSpec(packages=(Path("tiny.efpkg"),)), "hil-out")
>>> result.counts()
"""

from ._emulator import DEBS, WHEELS, EmulatorRoot, find_emulator, prepare_emulator
from ._errors import EmulatorError, HilError, MatrixError
from ._executors import EMULATED_NOT_RUN, CellPlan, package_bytes, plan_cells, run_process_cell
from ._fleet import FleetSession, run_fleet_cells
from ._matrix_spec import EXECUTORS, MatrixSpec, default_executors, host_arch, load_matrix
from ._report_files import cell_figures, html_page, junit_xml, markdown, write_reports
from ._results import CHECKS, CellResult, CheckResult, MatrixResult, cell_status
from ._runner import run_matrix

__all__ = [
    "CHECKS",
    "DEBS",
    "EMULATED_NOT_RUN",
    "EXECUTORS",
    "WHEELS",
    "CellPlan",
    "CellResult",
    "CheckResult",
    "EmulatorError",
    "EmulatorRoot",
    "FleetSession",
    "HilError",
    "MatrixError",
    "MatrixResult",
    "MatrixSpec",
    "cell_figures",
    "cell_status",
    "default_executors",
    "find_emulator",
    "host_arch",
    "html_page",
    "junit_xml",
    "load_matrix",
    "markdown",
    "package_bytes",
    "plan_cells",
    "prepare_emulator",
    "run_matrix",
    "run_fleet_cells",
    "run_process_cell",
    "write_reports",
]
