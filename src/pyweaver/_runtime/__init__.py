"""The app-side runtime: what runs inside every app process.

Go's Service Weaver calls this ``internal/weaver``. It owns ``weaver.init``/``weaver.get``,
the component registry and codec, local and remote stubs, the weavelet and its
placements (single-process and deployer-driven), the routing balancer, the shipping of
logs, spans and metrics to the deployer, and signal handling. It speaks to its deployer
only through :mod:`pyweaver.contract` and :mod:`pyweaver.call`; no deployer code is
imported here, and no deployer imports this package.
"""
