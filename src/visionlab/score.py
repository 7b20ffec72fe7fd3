"""`python -m visionlab.score`, the command's name as users type it (README); the code is
visionlab.commands.score."""

import sys

from visionlab.commands.score import main

if __name__ == "__main__":
    sys.exit(main())
