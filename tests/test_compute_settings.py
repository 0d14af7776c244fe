"""[compute]: parsing, the private-address rule, the engine's certificates, and the missing-extra message (no Ray
started here: these run in the fast suite)."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from sampan.compute import (
    ComputeSettings,
    LocalEngine,
    current_engine,
    issue_engine_certs,
    load_engine_tls,
    make_engine,
)
from sampan.compute.ray_engine import check_private_address, import_ray
from sampan.config import parse_config
from sampan.deploy.config import load_party_config, parse_run_spec
from sampan.errors import ConfigError

SOURCE = {"source": {"kind": "consortium", "n_smes": 600, "n_parties": 2}}


@pytest.mark.parametrize("address", ["127.0.0.1:6379", "10.1.2.3:6379", "ray://192.168.0.4:10001",
                                     "172.16.9.9:1", "[fd00::5]:6379", "[::1]:6379"])
def test_private_addresses_are_accepted(address: str) -> None:
    assert check_private_address(address) == address
    assert ComputeSettings(engine="ray", address=address).address == address


@pytest.mark.parametrize("address", ["8.8.8.8:6379", "ray://203.0.113.7:10001", "0.0.0.0:6379",
                                     "head.bank.example:6379", "169.254.1.1:6379", "[2001:db8::1]:6379"])
def test_public_or_named_addresses_are_refused_naming_the_field(address: str) -> None:
    with pytest.raises(ConfigError, match=r"\[compute\] address"):
        check_private_address(address)
    with pytest.raises(ValueError, match="address"):
        parse_config({**SOURCE, "compute": {"engine": "ray", "address": address}}, source="sim.toml")


def test_simulation_config_reads_compute_and_round_trips() -> None:
    config = parse_config({**SOURCE, "compute": {"engine": "ray", "num_workers": 3}}, source="sim.toml")
    assert config.compute == ComputeSettings(engine="ray", num_workers=3)
    assert parse_config(config.to_dict(), source="again").compute == config.compute
    assert parse_config(SOURCE, source="plain").compute is None
    with pytest.raises(ValueError, match="compute.engine"):
        parse_config({**SOURCE, "compute": {"engine": "spark"}}, source="sim.toml")
    with pytest.raises(ValueError, match="compute.workers"):
        parse_config({**SOURCE, "compute": {"workers": 2}}, source="sim.toml")


def test_a_submitted_run_cannot_choose_a_partys_engine() -> None:
    with pytest.raises(ConfigError, match=r"\[compute\] is chosen by each party"):
        parse_run_spec({"run": {"name": "x"}, "compute": {"engine": "ray"}}, source="run.toml")


def test_party_toml_compute_table_and_relative_tls_dir(tmp_path: Path) -> None:
    (tmp_path / "party.toml").write_text(
        '[party]\nname = "bank"\ncoordinator = "127.0.0.1:7000"\n'
        '[tls]\nca = "ca.pem"\ncert = "bank.pem"\nkey = "bank.key"\n'
        '[data.main]\npath = "bank.csv"\n[data.main.schema]\nid = "id"\nlabel = "y"\nfeatures = [{ name = "a" }]\n'
        '[compute]\nengine = "ray"\nnum_workers = 8\ntls_dir = "engine-tls"\n')
    config = load_party_config(tmp_path / "party.toml")
    assert config.compute is not None and config.compute.engine == "ray" and config.compute.num_workers == 8
    assert config.compute.tls_dir == str(tmp_path / "engine-tls")


def test_local_engine_is_the_default_and_make_engine_follows_the_table() -> None:
    assert isinstance(current_engine(), LocalEngine)
    assert isinstance(make_engine(None), LocalEngine)
    assert isinstance(make_engine(ComputeSettings()), LocalEngine)


def test_a_missing_ray_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if `sampan[ray]` were not installed
    with pytest.raises(ConfigError, match=r"pip install 'sampan\[ray\]'"):
        import_ray()
    with pytest.raises(ConfigError, match=r"pip install 'sampan\[ray\]'"):
        make_engine(ComputeSettings(engine="ray"))


def test_engine_certificates_come_from_a_private_ca_in_private_files(tmp_path: Path) -> None:
    tls = issue_engine_certs(tmp_path / "engine", party="bank", hosts=["127.0.0.1", "10.0.0.5", "node1"])
    assert stat.S_IMODE((tmp_path / "engine").stat().st_mode) == 0o700
    for path in (tls.ca_cert, tls.cert, tls.key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (tmp_path / "engine" / "ca.key").exists()  # nobody can mint another engine certificate later
    cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.0.0.5"}
    assert san.get_values_for_type(x509.DNSName) == ["node1"]
    assert load_engine_tls(tmp_path / "engine") == tls
    assert tls.environment()["RAY_USE_TLS"] == "1"
    kept = issue_engine_certs(tmp_path / "kept", keep_ca_key=True)
    assert stat.S_IMODE((tmp_path / "kept" / "ca.key").stat().st_mode) == 0o600 and kept.cert.exists()


def test_missing_or_open_engine_files_are_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[compute\] tls_dir: .*ca.pem is missing"):
        load_engine_tls(tmp_path / "nothing")
    tls = issue_engine_certs(tmp_path / "engine")
    tls.key.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        load_engine_tls(tmp_path / "engine")


def test_a_cluster_address_with_tls_needs_the_partys_certificates() -> None:
    pytest.importorskip("ray")
    from sampan.compute.ray_engine import RayEngine

    with pytest.raises(ConfigError, match=r"\[compute\] tls_dir"):
        RayEngine("10.0.0.5:6379", tls=True)
    with pytest.raises(ConfigError, match=r"\[compute\] address"):
        RayEngine("8.8.8.8:6379", tls=False)


def test_ray_simulation_refuses_forked_party_processes(tmp_path: Path) -> None:
    from sampan.runtime.runner import start_run
    from sampan.runtime.store import Store

    config = parse_config({**SOURCE, "run": {"workers": 2}, "compute": {"engine": "ray"}}, source="sim.toml")
    with pytest.raises(ConfigError, match="run.workers = 1"):
        start_run(config, Store.open(f"sqlite:///{tmp_path / 'r.db'}"))


def test_the_party_agent_answers_every_request_on_its_engine() -> None:
    from sampan.deploy.party_agent import PartyAgent
    from sampan.wire import Message

    class Marked(LocalEngine):
        name = "marked"

    agent = object.__new__(PartyAgent)  # only the dispatch is under test: no config, no link
    agent.engine = Marked()
    seen: list[str] = []

    def answer(message: Message) -> Message:
        seen.append(current_engine().name)
        return message

    agent._handle = answer  # type: ignore[method-assign]
    request = Message("r", 0, "coordinator", "bank", "fit")
    assert agent.handle(request) is request and seen == ["marked"]
    assert isinstance(current_engine(), LocalEngine) and current_engine().name == "local"  # reset after the request
