"""``python -m bizoo COMMAND ...``: the ``bizoo`` command line, for an environment whose scripts folder is not on
the PATH (as ``python -m pip``)."""

import sys

from .scripts.cli import main

if __name__ == "__main__":
    sys.exit(main())
