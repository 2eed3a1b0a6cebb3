"""Names both sides of the contract spell the same way."""

from typing import Final

#: The component that ``main()`` runs as (the root of the call graph).
MAIN: Final = "main"
#: The environment variable with the path of a single-process app's weaver.toml.
CONFIG_ENV: Final = "PYWEAVER_CONFIG"
#: The environment variable in which a deployer hands a weavelet its bootstrap.
BOOTSTRAP_ENV: Final = "PYWEAVER_BOOTSTRAP"
