"""Kubernetes names made from component names: DNS-1123, bounded, deterministic."""

from __future__ import annotations

from pyweaver.deployers.kube._names import (
    DNS1123_LABEL,
    LABEL_VALUE,
    dns_label,
    label_value,
    port_name,
)


def test_component_names_become_dns_labels() -> None:
    assert dns_label("factors", "app.Factorer", "297267fb") == "factors-app-factorer-297267fb"
    assert dns_label("My_App", "__main__.Thing") == "my-app-main-thing"


def test_a_long_name_is_cut_and_ends_in_a_hash_of_the_whole_name() -> None:
    long_a = "app." + "VeryLongComponentName" * 5 + "A"
    long_b = "app." + "VeryLongComponentName" * 5 + "B"
    a, b = dns_label(long_a), dns_label(long_b)
    assert len(a) <= 63 and DNS1123_LABEL.match(a)
    assert a != b  # same 63-character prefix, different hash
    assert a == dns_label(long_a)  # deterministic
    assert len(dns_label(long_a, limit=54)) <= 54


def test_label_values_and_port_names_have_their_own_shapes() -> None:
    assert label_value("app.Factorer") == "app.Factorer"
    assert LABEL_VALUE.match(label_value("-x-" + "y" * 80 + "."))
    assert len(label_value("y" * 80)) <= 63
    assert port_name("factors") == "factors"
    name = port_name("a_very_long_listener_name")
    assert len(name) <= 15 and name[0].isalpha()
    assert port_name("8080") == "p-8080"
