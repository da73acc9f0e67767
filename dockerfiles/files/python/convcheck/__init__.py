"""imagefactory's in-image convolution check.

`python3 -m convcheck` runs a fixed list of convolution (and sanity) cases, each in its own
child process with a timeout, compares every result with a CPU reference and classifies each
case into one class of the failure-signature table (see classify.py). Needs only the standard
library and torch (1.13 .. 2.x, Python >= 3.8); the parent process never imports torch, so a
GPU fault or hang can only ever take down one case's child. Children are forked from a
helper that imported torch once (--isolation fork, zygote.py) or spawned afresh (spawn).
"""

__version__ = "1.0"
