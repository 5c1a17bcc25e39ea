"""WebUI glue for sd-webui-hyper-sd: put our package on sys.path and hand over to the adapter of this host.

WebUI loads every ``scripts/*.py`` as a module, with the extension root on ``sys.path`` only
while scripts load; all extensions share one ``sys.modules``.  So we add ``extensions_lib`` to
``sys.path`` ourselves and import our uniquely named package ``hypersd``.  WebUI registers the
``scripts.Script`` subclasses it finds in this module's namespace: the accordion, the same class in
AUTOMATIC1111 WebUI and in Forge.  The adapter is chosen from what the host provides
(:func:`hypersd.forge.detect.is_forge`), never from a version string.
"""

import os
import sys

_LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "extensions_lib")
if _LIB not in sys.path:
    sys.path.insert(0, _LIB)

from modules import sd_samplers  # noqa: E402

from hypersd.forge.detect import is_forge  # noqa: E402

if is_forge(sd_samplers):
    from hypersd.forge.setup import setup  # noqa: E402
else:
    from hypersd.webui.setup import setup  # noqa: E402
from hypersd.webui.script import HyperSDScript  # noqa: E402,F401

setup()
