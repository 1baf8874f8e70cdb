"""`python -m dlcourse ...` runs the `dlcourse` command (also under `torchrun -m dlcourse ...`)."""
import sys

from dlcourse.cli import main

if __name__ == '__main__': sys.exit(main())
