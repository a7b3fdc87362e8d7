"""composer: deterministic partition and disk images from a Greengrass golden-device snapshot."""

import logging

__version__ = "0.1.0"

# a library logs, the application decides where to (cli.py --debug); without it nothing shows
logging.getLogger(__name__).addHandler(logging.NullHandler())
