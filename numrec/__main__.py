"""``python -m numrec``: the command line."""
from numrec.cli import main

raise SystemExit(main())
