"""`python -m strongroom_verify FILE...`"""

import sys

from strongroom_verify.cli import main

if __name__ == "__main__":
    sys.exit(main())
