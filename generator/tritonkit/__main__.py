"""``python -m tritonkit``: the same as the ``tritonkit`` command."""

from tritonkit.cli import main

raise SystemExit(main())
