import sys

from gradnap.cli import main

sys.exit(main())
