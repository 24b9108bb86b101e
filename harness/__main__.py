"""`python -m harness ...`: the `harness` command without installing the package (a bare GPU box
runs the checkout with PYTHONPATH set to its root; see scripts/gpu_check.sh)."""

import sys

from harness.cli import main

sys.exit(main())
