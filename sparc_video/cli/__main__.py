import sys

from sparc_video.cli.main import main

sys.exit(main())
