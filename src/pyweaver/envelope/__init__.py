"""The envelope: the deployer-side owner of one weavelet process.

It starts the process (``_process``), hands it its bootstrap, and talks to it over the
control channel.
"""
