"""``python -m napari_segnets ...`` (and ``torchrun -m napari_segnets ...``): the command line."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
