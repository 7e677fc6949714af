"""``python -m fsnb.export NOTEBOOK [-o SCRIPT] [--store PATH]``: the same as ``fsnb export``
(the command line lives in fsnb.cli; the package itself never imports it)."""

import sys

from fsnb.cli import main

sys.exit(main(["export", *sys.argv[1:]]))
