"""`python3 -m engine`: the btrfs-backup command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
