"""UNet calls and wall time per image: TCD 4 steps vs DPM++ SDE Karras 4 steps vs Euler 25 steps.

Not a test: prints ratios measured side by side in one run on the same tiny random model.
    python benchmarks/samplers.py [--size 64] [--repeats 5]
"""

import sys

from hypersd.compare import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["--size", "64", "--repeats", "5"]))
