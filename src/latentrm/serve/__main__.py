"""`python -m latentrm.serve --rm DIR ...` runs the reward server (same options as `latentrm serve`)."""

from latentrm.serve.cli import main

main()
