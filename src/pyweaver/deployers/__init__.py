"""Deployers: the code that decides where an application's components run.

One module per deployer (single process, multiprocess, Ray, Kubernetes), plus the
building blocks they share: the L4 listener proxy (``_proxy``), the per-user registry
of live deployments (``_registry``) and the per-deployment log store (``_logstore``).
Deployers depend on :mod:`pyweaver.envelope`, never the reverse.
"""
