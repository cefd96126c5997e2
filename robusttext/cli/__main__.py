"""``python -m robusttext.cli ...`` (and ``torchrun -m robusttext.cli ...``): the ``robusttext`` command."""

import sys

from .main import main

sys.exit(main())
