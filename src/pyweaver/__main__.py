"""``python -m pyweaver``: the same as the ``pyweaver`` command."""

from ._cli import main

main()
