"""The sandbox: the one place edgemux executes model output (``runner.run_python``).

- ``runner``: launch, supervise and report a run (timeout, output cap, how it ended);
- ``confine``: the levels of confinement a machine allows and the steps that confine the child;
- ``inside``: the boot script the sandboxed interpreter runs, with the syscall filter.
"""

from .runner import Limits, ProgramRun, isolation, run_python

__all__ = ["Limits", "ProgramRun", "isolation", "run_python"]
