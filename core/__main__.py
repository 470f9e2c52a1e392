import sys

from sculpt.cli.main import main

sys.exit(main())
