"""``python -m fsnb.export NOTEBOOK [-o SCRIPT] [--store PATH]``."""

import sys

from fsnb.export import main

sys.exit(main())
