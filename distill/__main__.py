"""`python -m distill ...`: the `distill` command, also from a checkout without installing
(`PYTHONPATH=. python3 -m distill train ...`)."""

import sys

from distill.cli import main

sys.exit(main())
