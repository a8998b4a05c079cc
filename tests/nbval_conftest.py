"""conftest.py of the nbval re-run (tests/test_nbval.py copies it next to the notebook copy it checks).

Two changes to nbval 0.11's kernel, so that a cell runs as it ran under ``cellbook run``:

- nbval starts the kernel in the folder of the notebook it runs; the copy lies in a temporary folder,
  so the kernel starts in ``$CELLBOOK_NBVAL_CWD`` instead: the source notebook's folder
  (``notebooks/partN``), where ``cellbook run`` starts it too;
- nbval executes each cell with ``store_history=False``; IPython then judges a trailing ``;`` on the
  previous history entry and shows the value the ``;`` hides (``rec.save();``), so cells are stored
  in the history as papermill stores them.
"""
import os

import nbval.plugin
from nbval.kernel import RunningKernel


class _KernelAsCellbookRun(RunningKernel):
    def __init__(self, kernel_name, cwd=None, startup_timeout=60):
        super().__init__(kernel_name, cwd=os.environ.get("CELLBOOK_NBVAL_CWD") or cwd,
                         startup_timeout=startup_timeout)

    def execute_cell_input(self, cell_input, allow_stdin=None):
        return self.kc.execute(cell_input, store_history=True, allow_stdin=allow_stdin, stop_on_error=False)


nbval.plugin.RunningKernel = _KernelAsCellbookRun
