#!/usr/bin/env python3
"""A Lambda stand-in on one machine (the package scripts/lambda_standin/; its docstring says what it
measures and how): this is its command line, `run` and `proxy`, as before."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lambda_standin.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
