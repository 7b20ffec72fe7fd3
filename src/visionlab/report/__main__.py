"""python -m visionlab.report SWEEP_DIR [--out DIR]"""

import sys

from visionlab.report import main

sys.exit(main())
