"""``python -m actorkube``: the same as the ``actorkube`` command."""

import sys

from actorkube.cli.main import main

sys.exit(main())
