"""`python -m lambda_standin` (with scripts/ on the path): the same as scripts/lambda-standin.py."""

from .cli import main

main()
