import sys

from perfwh.cli import main

sys.exit(main())
