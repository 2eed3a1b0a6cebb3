"""``python -m pyweaver``: the same as the ``pyweaver`` command."""

from pyweaver._cli import main

main()
