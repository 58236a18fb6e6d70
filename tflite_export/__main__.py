"""``python -m tflite_export export|inspect|bench ...`` (works without tfcompress)."""

import sys

from .cli import main

sys.exit(main())
