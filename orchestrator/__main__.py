"""``python -m orchestrator``: see :mod:`orchestrator.cli`.

Ctrl-C (or SIGTERM) at any moment ends the command with exit 130 and one line, never a
traceback. From here on, while the modules are imported and until a command takes over, the
signal ends the process at once: nothing has been written yet, and an exception raised by a
signal handler during an import can be swallowed (importlib's callbacks ignore exceptions) or
make CPython end the process by SIGINT at exit (when it lands in code run by ``exec()``). A
run takes over from its first moment to its last (it stops its workers and records what they
measured); commands that hold files or servers take Ctrl-C as KeyboardInterrupt, to close
them on the way out. Only the interpreter's own start-up, before this module runs, is
Python's.
"""

import os
import signal
import sys
from types import FrameType


def _exit_at_once(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"interrupted\n")
    os._exit(130)


signal.signal(signal.SIGINT, _exit_at_once)
signal.signal(signal.SIGTERM, _exit_at_once)

from orchestrator.cli import main  # noqa: E402 - after the handlers, which cover the imports

code = main()
if code == 130:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # see above: CPython may otherwise end the process by SIGINT
sys.exit(code)
