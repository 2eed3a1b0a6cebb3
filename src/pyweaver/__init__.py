"""pyweaver: Service Weaver for Python."""
