"""weaver.toml: the happy path, every kind of mistake, component sections and
WithConfig objects."""

from __future__ import annotations

import enum
from datetime import date
from pathlib import Path

import attrs
import pytest

from pyweaver._errors import ConfigError
from pyweaver.contract._config import (
    AppConfig,
    AppFacts,
    MultiConfig,
    SingleConfig,
    check_app_config,
    check_sections,
    component_config,
    load_config,
    parse_config,
)

FULL = """\
[serviceweaver]
name = "hello"
binary = "app.py"
args = ["--verbose", "x"]
env = ["KEY=VALUE", "EMPTY=", "URL=a=b"]
colocate = [["app.A", "app.B"], ["app.C"]]

[single]
listeners.hello = {address = "localhost:9000"}

[multi]
listeners.hello = {address = "localhost:9001"}
listeners.admin = {address = ":0"}

[multi.replicas]
default = 3
"app.A" = 2
main = 1

["app.Cache"]
size = 1000
limits = {max = 5}

[ray]
address = "head:6379"
"""


class Mode(enum.Enum):
    FAST = "fast"
    SAFE = "safe"


@attrs.define
class Limits:
    max: int = 1
    names: list[str] = attrs.Factory(list)


@attrs.frozen
class CacheConfig:
    size: int = 10
    ratio: float = 0.5
    name: str = "cache"
    enabled: bool = True
    limits: Limits = attrs.Factory(Limits)
    weights: dict[str, float] = attrs.Factory(dict)
    mode: Mode = Mode.FAST
    since: date | None = None


@attrs.define
class Required:
    url: str


def parse(text: str) -> AppConfig:
    return parse_config(text, path="weaver.toml")


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return str(info.value)


# -- the happy path ---------------------------------------------------------------------


def test_full_file(tmp_path: Path) -> None:
    path = tmp_path / "weaver.toml"
    path.write_text(FULL)
    cfg = load_config(path)
    assert cfg.path == path
    assert cfg.name == "hello"
    assert cfg.binary == "app.py"
    assert cfg.binary_path() == tmp_path / "app.py"
    assert cfg.module == ""
    assert cfg.args == ["--verbose", "x"]
    assert cfg.env == ["KEY=VALUE", "EMPTY=", "URL=a=b"]
    assert cfg.env_vars() == {"KEY": "VALUE", "EMPTY": "", "URL": "a=b"}
    assert cfg.colocate == [["app.A", "app.B"], ["app.C"]]
    assert cfg.group_of("app.B") == "app.A"
    assert cfg.group_of("app.Z") == "app.Z"
    assert cfg.single == SingleConfig(listeners={"hello": "localhost:9000"})
    assert cfg.multi == MultiConfig(
        listeners={"hello": "localhost:9001", "admin": ":0"},
        replicas=3,
        group_replicas={"app.A": 2, "main": 1},
    )
    assert cfg.multi.replicas_for("app.A") == 2
    assert cfg.multi.replicas_for("app.C") == 3
    assert cfg.sections == {"app.Cache": {"size": 1000, "limits": {"max": 5}}}
    assert cfg.deployers == {"ray": {"address": "head:6379"}}


def test_defaults() -> None:
    cfg = parse("")
    assert cfg == AppConfig()
    assert (cfg.name, cfg.binary_path(), cfg.multi.replicas_for("x")) == ("app", None, None)
    assert parse('[serviceweaver]\nbinary = "dir/server.py"').name == "server"
    assert parse('[serviceweaver]\nmodule = "hello.main"').name == "hello"
    assert parse('[serviceweaver]\nmodule = "pkg.app"').name == "app"


def test_replicas_spellings() -> None:
    assert parse("[multi]\nreplicas = 4").multi == MultiConfig(replicas=4)
    dotted = parse("[multi]\nreplicas.app.Cache = 1\nreplicas.default = 2").multi
    assert dotted == MultiConfig(replicas=2, group_replicas={"app.Cache": 1})
    inline = parse('[multi]\nreplicas = {"app.Cache" = 5}').multi
    assert inline.replicas_for("app.Cache") == 5
    assert inline.replicas_for("main") is None


# -- mistakes ---------------------------------------------------------------------------


def test_broken_toml_names_file_and_line() -> None:
    message = config_error('[serviceweaver]\nname = "x"\nbinary = app.py\n')
    assert message.startswith("weaver.toml line 3: ")
    assert "column" in message
    assert config_error('[serviceweaver]\nname = "x').startswith("weaver.toml")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[serviceweaver]\nnmae = "x"',
            "[serviceweaver] 'nmae': unknown key; did you mean 'name'?",
        ),
        ("[serviceweaver]\nrollout = 1", "[serviceweaver] 'rollout': unknown key (known: name,"),
        ("[single]\nreplicas = 2", "[single] 'replicas': unknown key"),
        ('[multi]\nmtls = "yes"', "[multi] mtls: expected true or false, got a string"),
        ('[multi]\nlisteners.a = {address = "x:1", port = 2}', "listeners.a 'port': unknown key"),
        ("[serviceweaver]\nname = 1", "[serviceweaver] name: expected a string, got a number"),
        ('[serviceweaver]\nargs = "a b"', "[serviceweaver] args: expected a list of strings"),
        ("[serviceweaver]\nenv = [1]", "[serviceweaver] env: expected a list of strings"),
        ('[serviceweaver]\nenv = ["NOVALUE"]', "[serviceweaver] env: 'NOVALUE' is not KEY=VALUE"),
        ('[serviceweaver]\nenv = ["=x"]', "is not KEY=VALUE"),
        (
            '[serviceweaver]\nbinary = "a.py"\nmodule = "a"',
            "[serviceweaver] binary: give binary or module, not both",
        ),
        ('[serviceweaver]\ncolocate = ["app.A"]', "[serviceweaver] colocate: expected a list"),
        ("[serviceweaver]\ncolocate = [[]]", "[serviceweaver] colocate: expected a list"),
        (
            '[serviceweaver]\ncolocate = [["app.A", "app.B"], ["app.C", "app.A"]]',
            "[serviceweaver] colocate: app.A is in two groups",
        ),
        (
            '[serviceweaver]\ncolocate = [["app.A", "app.A"]]',
            "colocate: app.A is twice in one group",
        ),
        ('[multi]\nreplicas = "two"', "[multi] replicas: expected a whole number, got a string"),
        ("[multi]\nreplicas = 1.5", "[multi] replicas: expected a whole number, got a number"),
        ("[multi]\nreplicas = true", "[multi] replicas: expected a whole number, got a boolean"),
        ("[multi]\nreplicas = 0", "[multi] replicas: expected at least 1, got 0"),
        ('[multi.replicas]\n"app.A" = "x"', '[multi] replicas."app.A": expected a whole number'),
        ("[multi]\nreplicas.default = -1", "[multi] replicas.default: expected at least 1"),
        ('[single]\nlisteners.hello = "localhost:1"', "[single] listeners.hello: expected {addr"),
        ("[single]\nlisteners.hello = {address = 9000}", 'listeners.hello.address: expected "host'),
        ('[single]\nlisteners = ["a"]', "[single] listeners: expected a table"),
        ('[single]\nlisteners."not-an-id" = {address = ":1"}', "a listener name is an identifier"),
        ('serviceweaver = "x"', "[serviceweaver] must be a table"),
        ("size = 1", "key 'size' is outside any section"),
        ("[mutli]\nreplicas = 2", "unknown section [mutli]"),
        ("[app.Reverser]\nsize = 1", "unknown section [app] (sections are serviceweaver"),
    ],
    ids=repr,
)
def test_mistakes_name_file_section_and_key(text: str, message: str) -> None:
    error = config_error(text)
    assert error.startswith("weaver.toml")
    assert message in error


# -- component sections -----------------------------------------------------------------


def test_component_config_from_a_section() -> None:
    cfg = parse(
        '["app.Cache"]\nsize = 5\nratio = 2\nname = "c"\nenabled = false\n'
        'limits = {max = 3, names = ["a"]}\nweights = {a = 1.5}\nmode = "safe"\n'
        "since = 2024-01-02\n"
    )
    value = component_config(
        CacheConfig, cfg.sections["app.Cache"], file="weaver.toml", section_name="app.Cache"
    )
    assert value == CacheConfig(
        size=5,
        ratio=2.0,
        name="c",
        enabled=False,
        limits=Limits(max=3, names=["a"]),
        weights={"a": 1.5},
        mode=Mode.SAFE,
        since=date(2024, 1, 2),
    )
    assert type(value.ratio) is float


def test_missing_section_means_defaults() -> None:
    value = component_config(CacheConfig, None, file="weaver.toml", section_name="app.Cache")
    assert value == CacheConfig()


@pytest.mark.parametrize(
    ("section", "messages"),
    [
        ({"size": "big"}, ['weaver.toml: ["app.Cache"].size: expected a whole number, got a str']),
        ({"size": 1.0}, ['["app.Cache"].size: expected a whole number, got a number']),
        ({"enabled": 1}, ['["app.Cache"].enabled: expected true or false']),
        ({"ratio": "x"}, ['["app.Cache"].ratio: expected a number']),
        ({"sizee": 1}, ["weaver.toml: [\"app.Cache\"]: unknown key 'sizee'"]),
        (
            {"limits": {"max": "x", "extra": 1}},
            [
                '["app.Cache"].limits.max: expected a whole number',
                "[\"app.Cache\"].limits: unknown key 'extra'",
            ],
        ),
        ({"limits": {"names": ["a", 2]}}, ['["app.Cache"].limits.names[1]: expected a string']),
        ({"weights": {"a": "heavy"}}, ["[\"app.Cache\"].weights['a']: expected a number"]),
        ({"mode": "slow"}, ['["app.Cache"].mode: invalid value']),
        ({"limits": 3}, ['["app.Cache"].limits']),
    ],
    ids=repr,
)
def test_component_config_mistakes(section: dict[str, object], messages: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        component_config(CacheConfig, section, file="weaver.toml", section_name="app.Cache")
    for message in messages:
        assert message in str(info.value)


def test_required_keys() -> None:
    assert component_config(
        Required, {"url": "u"}, file="f.toml", section_name="app.Db"
    ) == Required("u")
    with pytest.raises(ConfigError, match=r'f\.toml: \["app\.Db"\]\.url: required key is missing'):
        component_config(Required, None, file="f.toml", section_name="app.Db")


def test_check_sections() -> None:
    cfg = parse('["app.Cache"]\nsize = 1\n["app.Plain"]\nx = 1\n["app.Cahce"]\ny = 2\n')
    known: dict[str, type | None] = {"app.Cache": CacheConfig, "app.Plain": None}
    with pytest.raises(ConfigError) as info:
        check_sections(cfg, known)
    message = str(info.value)
    assert 'section ["app.Plain"]: app.Plain has no config' in message
    assert 'section ["app.Cahce"] names no component of the app; did you mean ["app.Cache"]?' in (
        message
    )
    check_sections(parse('["app.Cache"]\nsize = 1'), known)


def test_check_sections_checks_replica_groups() -> None:
    cfg = parse(
        '[serviceweaver]\ncolocate = [["app.A", "app.B"]]\n'
        '[multi.replicas]\n"app.B" = 2\n"app.Nope" = 1\nmain = 2\n"app.A" = 3\n'
    )
    with pytest.raises(ConfigError) as info:
        check_sections(cfg, {"app.A": None, "app.B": None})
    message = str(info.value)
    assert "app.B runs in the group app.A; set the replicas of that group" in message
    assert "app.Nope names no component" in message
    assert "main" not in message


# -- listener addresses, checked while parsing --------------------------------------------


@pytest.mark.parametrize(
    ("section", "address", "message"),
    [
        ("multi", "nonsense", "address 'nonsense': expected host:port"),
        ("multi", "localhost:70000", "port 70000 is out of range"),
        ("multi", "localhost:-1", "port -1 is out of range"),
        ("multi", "localhost:http", "port 'http' is not a number"),
        ("multi", "localhost:+80", "port '+80' is not a number"),
        ("multi", "localhost: 80", "port ' 80' is not a number"),
        ("single", "my host:80", "'my host' is not a host name or IP address"),
        ("single", "-x:80", "'-x' is not a host name or IP address"),
        ("single", "::1:80", "write an IPv6 host in brackets"),
        ("ray", "[zz]:80", "[zz] is not an IPv6 address"),
        ("kube", "localhost:65536", "port 65536 is out of range"),
    ],
)
def test_bad_listener_addresses_are_parse_errors(section: str, address: str, message: str) -> None:
    error = config_error(f'[{section}]\nlisteners.web = {{address = "{address}"}}')
    assert error.startswith(f"weaver.toml: [{section}] listeners.web.address: ")
    assert message in error


@pytest.mark.parametrize(
    "address", ["", ":0", ":9000", "localhost:9000", "127.0.0.1:1", "[::1]:80", "a.b-c.io:443"]
)
def test_good_listener_addresses(address: str) -> None:
    cfg = parse(f'[multi]\nlisteners.web = {{address = "{address}"}}')
    assert cfg.multi.listeners == {"web": address}


# -- check_app_config: the one check of weaver.toml against the app -------------------------


def test_colocate_names_must_be_components() -> None:
    cfg = parse('[serviceweaver]\ncolocate = [["main", "app.Cache", "app.Cahce"]]')
    findings = check_app_config(cfg, AppFacts(components={"app.Cache": True}))
    assert findings.errors == [
        "<config>: [serviceweaver] colocate: app.Cahce names no component of the app; "
        "did you mean 'app.Cache'?"
    ]
    with pytest.raises(ConfigError, match=r"colocate: app\.Cahce names no component"):
        check_sections(cfg, {"app.Cache": CacheConfig})


def test_unused_listener_names_are_warnings() -> None:
    cfg = parse(
        '[single]\nlisteners.web = {address = ":0"}\nlisteners.old = {address = ":0"}\n'
        '[multi]\nlisteners.web = {address = ":0"}\n'
        '[ray]\nlisteners.gone = {address = ":0"}\n'
    )
    findings = check_app_config(cfg, AppFacts(components={}, listeners=["web"]))
    assert findings.errors == []
    assert findings.warnings == [
        "<config>: [single] listeners.old: no component uses a listener named 'old' "
        "(the app's listeners: web)",
        "<config>: [ray] listeners.gone: no component uses a listener named 'gone' "
        "(the app's listeners: web)",
    ]
    # When the app's listener names cannot be told, nothing is said.
    assert check_app_config(cfg, AppFacts(components={})).warnings == []


def test_app_facts_round_trip_and_section_errors_are_errors() -> None:
    facts = AppFacts(components={"app.Cache": True}, listeners=None, section_errors=["f: bad size"])
    assert AppFacts.from_json(facts.to_json()) == facts
    assert check_app_config(parse(""), facts).errors == ["f: bad size"]
