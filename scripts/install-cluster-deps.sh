#!/bin/sh
# System packages for the multi-host tests in tests/cluster (network namespaces, veth,
# bridges): iproute2's `ip`. Idempotent; installs nothing when `ip` is already there.
# Runs as root with no stdin (CI). Ray itself comes from PyPI: pip install -e '.[ray]'.
set -eu

have_ip() {
    command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || [ -x /bin/ip ]
}

if have_ip; then
    echo "install-cluster-deps: ip already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    # Not fatal: without root the cluster tests skip anyway (netns needs root), saying why.
    echo "install-cluster-deps: ip is missing and installing it needs root; skipping" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq </dev/null
apt-get install -y -qq --no-install-recommends iproute2 </dev/null
have_ip
echo "install-cluster-deps: installed iproute2"
