"""WebUI glue for sd-webui-hyper-sd: put our package on sys.path and hand over to the adapter.

WebUI loads every ``scripts/*.py`` as a module, with the extension root on ``sys.path`` only
while scripts load; all extensions share one ``sys.modules``.  So we add ``extensions_lib`` to
``sys.path`` ourselves and import our uniquely named package ``hypersd``.  WebUI registers the
``scripts.Script`` subclasses it finds in this module's namespace: the accordion.
"""

import os
import sys

_LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "extensions_lib")
if _LIB not in sys.path:
    sys.path.insert(0, _LIB)

from hypersd.webui.script import HyperSDScript  # noqa: E402,F401
from hypersd.webui.setup import setup  # noqa: E402

setup()
