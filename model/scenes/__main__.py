import sys

from model.scenes.cli import main

sys.exit(main())
