"""The single-process deployer: ``pyweaver single deploy weaver.toml`` runs the app in
this process; the app registers itself and serves its status endpoint (see
``pyweaver._runtime._single_status``), which ``pyweaver single status`` and
``pyweaver single dashboard`` read (``_cli``)."""
