import sys

from elmo_fast.cli import main

sys.exit(main())
