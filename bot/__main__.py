"""`python -m bot` is the `yibao` command."""

import sys

from bot.cli import main

sys.exit(main())
