"""``python -m pyweaver.envelope``: run a weavelet that imports the app named in its
bootstrap (used for groups whose process does not run the app's main)."""

from ._weavelet import main

main()
