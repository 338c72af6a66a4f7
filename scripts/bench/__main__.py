"""``python -m bizoo.scripts.bench <target>``: the same command as ``bizoo bench <target>``."""

from . import main

raise SystemExit(main())
