"""`edgerec-export`: the build stage's command (`python -m export` in a source checkout).

The stage is the repository's export/ folder; a wheel ships it as ``edgerec_export``, so that no
top-level ``export`` package lands in site-packages, while a checkout (or an editable install) has it
as ``export``. It needs the export extra (torch, transformers, optimum) and says so without it.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from edgerec_export.__main__ import main as run  # an installed wheel
    except ModuleNotFoundError:
        try:
            from export.__main__ import main as run  # a source checkout
        except ModuleNotFoundError:
            print("edgerec-export: the build stage is not installed; pip install 'edgerec[export]'", file=sys.stderr)
            return 2
    return run()
