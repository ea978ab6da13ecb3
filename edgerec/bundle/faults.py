"""Named crash points for testing that writers survive being killed anywhere.

Writers call ``fault_point("after-fsync:index.hnsw")`` at each step that
matters for durability. Normally this does nothing. With
``EDGEREC_FAULT_AT=<step>`` set, the process SIGKILLs itself when it reaches
that step, exactly as a power cut or an OOM kill would stop it (no cleanup,
no ``finally``). With ``EDGEREC_FAULT_LOG=<file>`` set, every step reached is
appended to the file, so tests can list the steps an update goes through.
"""

from __future__ import annotations

import os
import signal

FAULT_AT_ENV = "EDGEREC_FAULT_AT"
FAULT_LOG_ENV = "EDGEREC_FAULT_LOG"


def fault_point(step: str) -> None:
    log = os.environ.get(FAULT_LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(step + "\n")
    if os.environ.get(FAULT_AT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
