"""Put plugins/module_utils on sys.path so the unit tests can `import engine` like the CLI does."""

import sys
from pathlib import Path

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)
