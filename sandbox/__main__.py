"""`python -m sandbox ...` runs the sandbox (same as `provisioner sandbox ...`)."""

import sys

from sandbox.cli import main

sys.exit(main())
