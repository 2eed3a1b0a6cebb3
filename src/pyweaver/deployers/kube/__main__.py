"""``python -m pyweaver.deployers.kube``: the entrypoint of every pod (see ``_pod``)."""

from pyweaver.deployers.kube._pod import main

main()
