"""``python -m isolationctl``: the same as the ``isolationctl`` command."""

import sys

from isolationctl.main import main

sys.exit(main())
