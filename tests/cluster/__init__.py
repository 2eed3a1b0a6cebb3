"""Multi-host test infrastructure: network-namespace "hosts" and a real Ray cluster across them.

`netns` builds the hosts (one network namespace each, joined by veth pairs to a bridge that
lives in its own "switch" namespace, so the machine's root namespace is never touched);
`ray_cluster` runs a Ray head and workers on those hosts and drivers against them. Both are
plain helpers plus context managers, so a test module can wrap them in fixtures of any scope.
"""
