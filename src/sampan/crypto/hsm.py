"""An organisation's signing key held in an HSM through PKCS#11: signs like `PartyIdentity`, never leaves the token.

Why: the organisation key signs what binds the organisation — its per-run protocol keys (a substituted
key would let a coordinator sit inside every sealed channel) and its approvals of jobs. A bank keeps such
a key in its HSM: generated inside the token, marked sensitive and not extractable, used only through
the token's signing operation after a PIN login. `HsmIdentity` has `PartyIdentity`'s interface (`name`,
`role`, `certificate`, `certificate_pem`, `sign(payload) -> bytes`) and the same scheme: ECDSA over
P-256 with SHA-256, DER-encoded, so `IdentityVerifier.verify` accepts its signatures unchanged. The
payload is hashed here and the token signs the digest (CKM_ECDSA): every PKCS#11 token supports that,
while CKM_ECDSA_SHA256 is optional (SoftHSM 2.6 lacks it).

Threat model: an attacker with this machine's files and the party's process memory, but not the token's
PIN-protected key material, cannot sign as the organisation once the process is gone, and cannot copy the
key: the token refuses to reveal the private value (CKA_SENSITIVE) or to wrap it out (CKA_EXTRACTABLE
false), and those attributes cannot be turned back. A key already in the token (`--existing`, or the one
`HsmIdentity` loads) is used only if the token reports it SENSITIVE, ALWAYS_SENSITIVE, NEVER_EXTRACTABLE and
not EXTRACTABLE (so it was never readable, e.g. not imported from a file). While the process runs, it can
ask the token to sign (that is the point); the PIN comes from a file or an environment variable, never from a
config file.
Not covered: a compromised token, or an attacker who holds the PIN and reaches the token.

python-pkcs11 (the `hsm` extra) and asn1crypto (its dependency) are imported only here.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sampan.crypto.identity import IdentityError, certificate_identity, load_certificate

__all__ = ["HsmError", "Pkcs11Key", "HsmIdentity", "generate_key", "public_key", "check_key", "sign_digest",
           "certificate_request", "open_session"]

CURVE = "secp256r1"


class HsmError(IdentityError):
    """The token, key or PIN cannot be used; says which module, token and key."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, "hsm", detail)


@dataclass(frozen=True)
class Pkcs11Key:
    """Where the key is: the PKCS#11 module (.so), the token's label, the key's label; the PIN, in memory only."""

    module: str
    token_label: str
    key_label: str
    pin: str

    def __repr__(self) -> str:  # the PIN never reaches a log line or a traceback
        return f"Pkcs11Key(module={self.module!r}, token_label={self.token_label!r}, key_label={self.key_label!r})"

    @property
    def where(self) -> str:
        return f"key {self.key_label!r} in token {self.token_label!r} ({self.module})"


def _pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError:
        raise HsmError("python-pkcs11 is not installed: pip install 'sampan[hsm]'") from None
    return pkcs11


# PKCS#11 logs in per application, not per session: a second C_Login fails (CKR_USER_ALREADY_LOGGED_IN) and
# python-pkcs11 logs the whole application out when a logged-in session closes. So one "login" session per
# (module, token) is kept while any session of ours is open; the others open without a PIN and share it.
_LOGINS: dict[tuple[str, str], list[Any]] = {}  # -> [login session, PIN digest, users]
_LOGIN_LOCK = threading.Lock()


def _token(key: Pkcs11Key) -> Any:
    pkcs11 = _pkcs11()
    try:
        lib = pkcs11.lib(key.module)
    except (RuntimeError, OSError) as exc:
        raise HsmError(f"cannot load the PKCS#11 module {key.module!r}: {exc}") from None
    try:
        return lib.get_token(token_label=key.token_label)
    except pkcs11.NoSuchToken:
        raise HsmError(f"no token labelled {key.token_label!r} in {key.module}") from None
    except pkcs11.PKCS11Error as exc:
        raise HsmError(f"token {key.token_label!r}: {type(exc).__name__} {exc}") from None


def _login(key: Pkcs11Key, token: Any) -> None:
    pkcs11 = _pkcs11()
    digest = hashlib.sha256(key.pin.encode()).digest()
    where = (key.module, key.token_label)
    entry = _LOGINS.get(where)
    if entry is not None:
        if entry[1] != digest:  # the token accepted another PIN earlier: this one is not the user PIN
            raise HsmError(f"token {key.token_label!r}: the PIN is wrong")
        entry[2] += 1
        return
    try:
        login = token.open(user_pin=key.pin)
    except (pkcs11.PinIncorrect, pkcs11.PinInvalid, pkcs11.PinLenRange):
        raise HsmError(f"token {key.token_label!r}: the PIN is wrong") from None
    except pkcs11.PinLocked:
        raise HsmError(f"token {key.token_label!r}: the PIN is locked (too many wrong PINs)") from None
    except pkcs11.PKCS11Error as exc:
        raise HsmError(f"token {key.token_label!r}: {type(exc).__name__} {exc}") from None
    _LOGINS[where] = [login, digest, 1]


def _logout(key: Pkcs11Key) -> None:
    where = (key.module, key.token_label)
    entry = _LOGINS.get(where)
    if entry is None:
        return
    entry[2] -= 1
    if entry[2] <= 0:
        del _LOGINS[where]
        try:
            entry[0].close()  # logs the application out of the token
        except Exception:  # noqa: BLE001 - the token may have dropped the session already
            pass


class _Session:
    """A session on the logged-in token; closing it releases the login when it is the last one."""

    def __init__(self, key: Pkcs11Key, rw: bool) -> None:
        self.key = key
        token = _token(key)
        with _LOGIN_LOCK:
            _login(key, token)
            try:
                self.session: Any = token.open(rw=rw)
            except Exception as exc:
                _logout(key)
                raise HsmError(f"token {key.token_label!r}: cannot open a session ({exc})") from None

    def __enter__(self) -> Any:
        return self.session

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        with _LOGIN_LOCK:
            try:
                session.close()
            except Exception:  # noqa: BLE001
                pass
            _logout(self.key)


def open_session(key: Pkcs11Key, *, rw: bool = False) -> _Session:
    """A logged-in session on the key's token, as a context manager (also for operators' tools and tests)."""
    return _Session(key, rw)


def _session(key: Pkcs11Key, *, rw: bool = False) -> _Session:
    return _Session(key, rw)


def _find(session: Any, key: Pkcs11Key, object_class: Any) -> Any:
    pkcs11 = _pkcs11()
    try:
        return session.get_key(object_class=object_class, key_type=pkcs11.KeyType.EC, label=key.key_label)
    except pkcs11.NoSuchKey:
        raise HsmError(f"no {object_class.name.lower().replace('_', ' ')} for {key.where}") from None
    except pkcs11.MultipleObjectsReturned:
        raise HsmError(f"several keys labelled {key.key_label!r} in token {key.token_label!r}: "
                       "labels must be unique") from None


def _private_key(session: Any, key: Pkcs11Key) -> Any:
    """The private half, only if the token keeps it in: sensitive and not extractable, and always so.

    Why: a key someone made earlier with EXTRACTABLE or without SENSITIVE (or imported from a file: then it was
    never ALWAYS_SENSITIVE / NEVER_EXTRACTABLE, and a copy may live outside the token) would break the threat
    model silently (R14-ENT-7). An attribute the token will not report counts as a refusal."""
    pkcs11 = _pkcs11()
    attr = pkcs11.Attribute
    private = _find(session, key, pkcs11.ObjectClass.PRIVATE_KEY)
    wanted = {attr.SENSITIVE: True, attr.ALWAYS_SENSITIVE: True, attr.EXTRACTABLE: False,
              attr.NEVER_EXTRACTABLE: True}
    for attribute, value in wanted.items():
        try:
            actual = private[attribute]
        except pkcs11.PKCS11Error as exc:
            raise HsmError(f"{key.where}: the token does not report {attribute.name} ({type(exc).__name__}); "
                           "refusing a key that may be extractable or not sensitive") from None
        if bool(actual) is not value:
            raise HsmError(f"{key.where}: {attribute.name} is {bool(actual)}: the private key is (or was) "
                           "extractable or not sensitive, so a copy may exist outside the token; make a new key "
                           "in the token (sampan certs hsm-keygen without --existing)")
    return private


def _public_key(session: Any, key: Pkcs11Key) -> ec.EllipticCurvePublicKey:
    from pkcs11.util.ec import encode_ec_public_key

    public = _find(session, key, _pkcs11().ObjectClass.PUBLIC_KEY)
    loaded = serialization.load_der_public_key(encode_ec_public_key(public))
    if not isinstance(loaded, ec.EllipticCurvePublicKey) or not isinstance(loaded.curve, ec.SECP256R1):
        raise HsmError(f"{key.where} is not an ECDSA P-256 key")
    return loaded


def generate_key(key: Pkcs11Key) -> ec.EllipticCurvePublicKey:
    """Make an ECDSA P-256 key pair INSIDE the token (private half sensitive, not extractable); its public key.

    Refuses to add a second key under a label that is already taken."""
    pkcs11 = _pkcs11()
    from pkcs11.util.ec import encode_named_curve_parameters

    attr = pkcs11.Attribute
    with _session(key, rw=True) as session:
        if list(session.get_objects({attr.LABEL: key.key_label})):
            raise HsmError(f"token {key.token_label!r} already holds an object labelled {key.key_label!r}; "
                           "refusing to make a second key under that label")
        key_id = hashlib.sha256(key.key_label.encode()).digest()[:16]
        params = session.create_domain_parameters(
            pkcs11.KeyType.EC, {attr.EC_PARAMS: encode_named_curve_parameters(CURVE)}, local=True)
        params.generate_keypair(
            store=True, label=key.key_label, id=key_id,
            public_template={attr.VERIFY: True, attr.TOKEN: True},
            private_template={attr.SIGN: True, attr.TOKEN: True, attr.PRIVATE: True, attr.SENSITIVE: True,
                              attr.EXTRACTABLE: False, attr.DERIVE: False, attr.DECRYPT: False,
                              attr.UNWRAP: False})
        return _public_key(session, key)


def public_key(key: Pkcs11Key) -> ec.EllipticCurvePublicKey:
    with _session(key) as session:
        return _public_key(session, key)


def check_key(key: Pkcs11Key) -> ec.EllipticCurvePublicKey:
    """The public key of a pair already in the token, after checking its private half never left it."""
    with _session(key) as session:
        public = _public_key(session, key)
        _private_key(session, key)
        return public


def _der_signature(raw: bytes) -> bytes:
    from pkcs11.util.ec import encode_ecdsa_signature

    return bytes(encode_ecdsa_signature(raw))


def sign_digest(session: Any, key: Pkcs11Key, private: Any, payload: bytes) -> bytes:
    """ECDSA-SHA256 (DER) over `payload`: SHA-256 here, the raw ECDSA on the digest in the token."""
    pkcs11 = _pkcs11()
    try:
        raw = private.sign(hashlib.sha256(payload).digest(), mechanism=pkcs11.Mechanism.ECDSA)
    except pkcs11.PKCS11Error as exc:
        raise HsmError(f"{key.where}: signing failed ({type(exc).__name__} {exc})") from None
    return _der_signature(bytes(raw))


def certificate_request(key: Pkcs11Key, subject: x509.Name, extensions: list[x509.Extension[Any]]) -> bytes:
    """A PKCS#10 CSR (PEM) for the token's key, signed by the token (ECDSA-SHA256).

    `cryptography` signs CSRs only with keys it holds, so the request is assembled with asn1crypto from the
    DER that `cryptography` encodes (subject, extensions): the bytes are those `create_request` makes for a
    file key, and the CA reads them with the same `x509.load_pem_x509_csr`."""
    from asn1crypto import csr as acsr  # type: ignore[import-untyped]
    from asn1crypto import keys as akeys
    from asn1crypto import pem as apem
    from asn1crypto import x509 as ax509

    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    with _session(key) as session:
        public = _public_key(session, key)
        info = acsr.CertificationRequestInfo({
            "version": "v1",
            "subject": ax509.Name.load(subject.public_bytes()),
            "subject_pk_info": akeys.PublicKeyInfo.load(public.public_bytes(*spki)),
            "attributes": [{"type": "extension_request", "values": [[
                {"extn_id": e.oid.dotted_string, "critical": e.critical,
                 "extn_value": ax509.ParsableOctetString(e.value.public_bytes())} for e in extensions]]}],
        })
        signature = sign_digest(session, key, _private_key(session, key), info.dump())
    request = acsr.CertificationRequest({"certification_request_info": info,
                                         "signature_algorithm": {"algorithm": "sha256_ecdsa"},
                                         "signature": signature})
    pem = bytes(apem.armor("CERTIFICATE REQUEST", request.dump()))
    loaded = x509.load_pem_x509_csr(pem)
    if not loaded.is_signature_valid:  # the token signed something else, or the encoding drifted
        raise HsmError(f"{key.where}: the CSR the token signed does not verify")
    return pem


class HsmIdentity:
    """An organisation identity whose private key stays in a PKCS#11 token (see the module docstring).

    One logged-in session is kept for the identity's life; signing is serialised (a PKCS#11 session
    runs one operation at a time)."""

    def __init__(self, key: Pkcs11Key, certificate: bytes | x509.Certificate) -> None:
        self.key = key
        self.certificate = load_certificate(certificate)
        self.name, self.role = certificate_identity(self.certificate)
        self._lock = threading.Lock()
        self._opened: _Session | None = _session(key)
        session = self._opened.session
        try:
            spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            if _public_key(session, key).public_bytes(*spki) != self.certificate.public_key().public_bytes(*spki):
                raise IdentityError(self.name, "bad_key", f"{key.where} does not belong to the certificate of "
                                    f"{self.name!r}")
            self._private = _private_key(session, key)
        except BaseException:
            self.close()
            raise

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, payload: bytes) -> bytes:
        """ECDSA-SHA256 (DER) over `payload`, computed by the token."""
        with self._lock:
            if self._opened is None:
                raise HsmError(f"{self.key.where}: this identity was closed")
            return sign_digest(self._opened.session, self.key, self._private, bytes(payload))

    def close(self) -> None:
        """End the identity's session (and the token login, if no other session of this process uses it)."""
        with self._lock:
            opened, self._opened = self._opened, None
        if opened is not None:
            opened.close()

    def __del__(self) -> None:  # a forgotten identity still releases the token's login
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"HsmIdentity(name={self.name!r}, role={self.role!r}, {self.key.where})"
