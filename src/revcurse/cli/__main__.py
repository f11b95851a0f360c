"""``python -m revcurse.cli``: the same as the ``revcurse`` command."""

from revcurse.cli import main

main()
