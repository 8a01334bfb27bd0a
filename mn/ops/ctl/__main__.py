"""`python -m mn.ops.ctl`, the same as zstack-ctl (the stable name is `python -m mn.ctl`)."""

import sys

from mn.ops.ctl import main

sys.exit(main())
