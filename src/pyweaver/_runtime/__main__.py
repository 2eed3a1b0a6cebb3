"""``python -m pyweaver._runtime``: run a weavelet that imports the app named in its
bootstrap (used for groups whose process does not run the app's main)."""

from pyweaver._runtime._remote import main

main()
