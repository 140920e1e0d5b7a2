"""``python -m cryorl``: the command line, as the ``cryorl`` command."""
import sys

from cryorl.cli import main

sys.exit(main())
