"""`sampan certs hsm-keygen`: an organisation key made inside an HSM (PKCS#11) and a CSR for it, signed by the token.

Mounted on the `certs` group by `sampan.cli.deploy`. The PIN comes from --pin-file (0600) or the environment
variable named by --pin-env (default SAMPAN_HSM_PIN), never from the command line.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from sampan.cli.error_path import fail

console = Console()


def certs_hsm_keygen(
    name: str = typer.Argument(..., help="Member name (the CN of its certificates)."),
    role: str = typer.Option("party", help="party, coordinator or operator."),
    module: str = typer.Option(..., "--module", help="The HSM's PKCS#11 module (.so), e.g. "
                               "/usr/lib/softhsm/libsofthsm2.so."),
    token_label: str = typer.Option(..., "--token-label", help="Label of the token that holds the key."),
    key_label: str = typer.Option(..., "--key-label", help="Label for the new key pair in the token."),
    pin_file: Path | None = typer.Option(None, "--pin-file", help="File holding the user PIN (0600)."),
    pin_env: str = typer.Option("SAMPAN_HSM_PIN", "--pin-env", help="Environment variable holding the user PIN "
                                "(used when --pin-file is not given)."),
    directory: Path = typer.Option(Path("."), "--dir", help="Where NAME-signing.csr is written."),
    organisation: str | None = typer.Option(None, help="Organisation name on the certificate."),
    existing: bool = typer.Option(False, "--existing", help="Use the key already under --key-label (no new key)."),
) -> None:
    """Make this member's signing key inside its HSM (never extractable) and a CSR for it, signed by the token."""
    from sampan.crypto.identity import IdentityError
    from sampan.deploy.cert_checks import CertError
    from sampan.deploy.hsm_request import create_hsm_request
    from sampan.deploy.identity_source import HsmSection, pkcs11_key
    from sampan.errors import ConfigError

    try:
        section = HsmSection(module=module, token_label=token_label, key_label=key_label, certificate=None,
                             pin_file=str(pin_file) if pin_file else None, pin_env=None if pin_file else pin_env)
        csr = create_hsm_request(pkcs11_key(section, who=name), name, role, directory, organisation=organisation,
                                 generate=not existing)
    except (ConfigError, CertError, IdentityError, ValueError) as exc:
        fail(exc)
    console.print(f"Key {key_label!r} is in token {token_label!r} (sensitive, not extractable). Send {csr} to the "
                  "consortium CA operator: `sampan certs sign --signing-only`; then set [hsm] in party.toml "
                  "(docs/deploy.md).", soft_wrap=True, highlight=False)
