import pyweaver as weaver  # noqa: F401

raise RuntimeError("no database at import")
