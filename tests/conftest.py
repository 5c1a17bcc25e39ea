import pathlib
import sys

# Tests import the package from the source tree even when it was not pip-installed.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "extensions_lib"))
