"""`python -m tfgcrf ...`: the same command line as the `tfgcrf` console script."""

import sys

from tfgcrf.cli import main

if __name__ == "__main__":
    sys.exit(main())
