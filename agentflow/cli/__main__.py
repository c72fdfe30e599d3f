"""``python -m agentflow.cli``: the ``agentflow`` command."""

import sys

from agentflow.cli import main

sys.exit(main())
