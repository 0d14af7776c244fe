"""`python -m sampan.cli ...` (the same app as the `sampan` console script)."""

from sampan.cli import main

main()
