"""The notebook runner behind ``cellbook run``: papermill, checked parameters, nothing half-published.

    from cellbook.runner import run_many, run_notebook
    run_many(["part1/01_data"], profile="quick", device="cpu", overrides={"seed": 1})

:func:`run_notebook` executes one notebook into a staging folder and publishes its executed copy
and results JSON together, only when every cell ran (see :mod:`cellbook.runner._execute`);
:func:`run_many` and :func:`run_parallel` check everything first and fetch the data.  "cell N" in
an error is the 1-based position of the cell among all cells of the source notebook
(:func:`cellbook.nbtools.cell_labels`); the book check uses the same numbers.
"""
from ..layout import chains
from ._execute import NotebookFailed, NotebookInterrupted, exit_code, run_notebook, signal_name
from ._many import fetch_data, run_many, run_parallel
from ._parameters import (
    RUNNER_PARAMETERS,
    check_parameter,
    own_overrides,
    parse_overrides,
    plan,
    resolve_run_device,
    smoke_overrides,
)

__all__ = ["RUNNER_PARAMETERS", "NotebookFailed", "NotebookInterrupted", "chains", "check_parameter", "exit_code",
           "fetch_data", "own_overrides", "parse_overrides", "plan", "resolve_run_device", "run_many",
           "run_notebook", "run_parallel", "signal_name", "smoke_overrides"]
