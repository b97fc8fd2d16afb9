"""Access tokens: API key storage, token issuing and verification.

Tokens are HS256 JWTs signed with the secret of an API key; the key itself is
the ``iss`` claim, which is how the server picks the secret when several keys
are configured at once (rotation).  Nothing here does I/O beyond reading a key
file, so every refusal can be tested from a table.

Secrets and tokens must never appear in error messages: errors end up in logs
and, for tokens, in the HTTP 401 body returned to whoever presented them.
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any, Final

import jwt

ALGORITHM: Final = "HS256"
MIN_SECRET_CHARS: Final = 8
DEV_KEY: Final = "devkey"
DEV_SECRET: Final = "devsecret"
DEFAULT_TTL_S: Final = 6 * 3600

# Older PyJWT releases (the floor in pyproject is 2.8) do not have this class.
_KEY_LENGTH_WARNING: Final = getattr(jwt, "InsecureKeyLengthWarning", None)

# Quoted back from a token in error messages, at most this much: enough to spot
# a typo in a key name, not enough to leak or reflect a payload.
_SHOW_CHARS: Final = 40


class KeyStoreError(ValueError):
    """The key configuration is malformed.  Messages never contain a secret."""


class AuthError(Exception):
    """A token was refused.  ``message`` is safe to return to the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------
# Key store
# --------------------------------------------------------------------------

# API keys go into the `iss` claim and into logs, so keep them to a plain,
# unambiguous alphabet; the separators ":" "," "#" can then never appear in one.
_KEY_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,128}", re.ASCII)


class KeyStore:
    """API key -> secret map; several keys may be live at once for rotation."""

    __slots__ = ("_secrets", "is_dev")

    def __init__(self, secrets: Mapping[str, str], *, _dev: bool = False) -> None:
        if not secrets:
            raise KeyStoreError("no API keys configured")
        for key, secret in secrets.items():
            _check_pair(key, secret, where="", allow_weak=_dev)
        self._secrets: dict[str, str] = dict(secrets)
        # Lets the server warn loudly at startup when running on the dev key.
        self.is_dev = _dev

    @classmethod
    def dev(cls) -> KeyStore:
        """The well-known development key.  Never use it on a reachable server."""
        # The dev key is exempt from the secret policy on purpose: it is public
        # knowledge anyway, and the exemption must survive a change of its value.
        return cls({DEV_KEY: DEV_SECRET}, _dev=True)

    @classmethod
    def from_env(cls, value: str) -> KeyStore:
        """Parse ``"key:secret,key2:secret2"`` (as found in an environment variable)."""
        secrets: dict[str, str] = {}
        entries = value.split(",")
        for n, entry in enumerate(entries, start=1):
            where = f"entry {n}"
            if not entry.strip():
                # Tolerate a trailing comma, but not an empty value overall.
                if len(entries) > 1:
                    continue
                raise KeyStoreError("no API keys configured (expected 'key:secret,...')")
            key, sep, secret = entry.partition(":")
            if not sep:
                raise KeyStoreError(f"{where}: expected 'key:secret'")
            key, secret = key.strip(), secret.strip()
            _check_pair(key, secret, where=where, allow_weak=False)
            if key in secrets:
                raise KeyStoreError(f"{where}: API key {key!r} is defined more than once")
            secrets[key] = secret
        return cls(secrets)

    @classmethod
    def from_file(cls, path: str | PathLike[str]) -> KeyStore:
        """Read one ``key: secret`` (or ``key:secret``) per line.

        Blank lines, ``#`` comment lines and a YAML ``---`` marker are skipped,
        so a flat YAML mapping file works as-is.  As in YAML, an unquoted secret
        ends at ``" #"`` (inline comment), and a secret may be wrapped in single
        or double quotes to keep such characters.
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise KeyStoreError(f"cannot read key file {p}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise KeyStoreError(f"{p}: key file is not valid UTF-8") from None

        secrets: dict[str, str] = {}
        first_seen: dict[str, int] = {}
        for lineno, line in enumerate(text.splitlines(), start=1):
            where = f"{p} line {lineno}"
            stripped = line.strip()
            if not stripped or stripped.startswith("#") or stripped == "---":
                continue
            key, sep, rest = stripped.partition(":")
            if not sep:
                # Do not quote the line: it may well be a bare secret.
                raise KeyStoreError(f"{where}: expected 'key: secret'")
            key = key.strip()
            secret = _yaml_scalar(rest, where)
            _check_pair(key, secret, where=where, allow_weak=False)
            if key in secrets:
                raise KeyStoreError(
                    f"{where}: API key {key!r} is already defined on line {first_seen[key]}"
                )
            secrets[key] = secret
            first_seen[key] = lineno
        if not secrets:
            raise KeyStoreError(f"{p}: no API keys found")
        return cls(secrets)

    def secret_for(self, key: str) -> str | None:
        return self._secrets.get(key)

    def keys(self) -> list[str]:
        return list(self._secrets)

    def __contains__(self, key: object) -> bool:
        return key in self._secrets

    def __len__(self) -> int:
        return len(self._secrets)

    def __iter__(self) -> Iterator[str]:
        return iter(self._secrets)

    def __repr__(self) -> str:
        # Keys only: a KeyStore may well end up in a log line or a traceback.
        return f"KeyStore(keys={sorted(self._secrets)!r})"


def _yaml_scalar(rest: str, where: str) -> str:
    """The value after ``key:`` with YAML-ish quoting and inline comments."""
    value = rest.strip()
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        if end == -1:
            raise KeyStoreError(f"{where}: unterminated {quote} quote in secret")
        after = value[end + 1 :].strip()
        if after and not after.startswith("#"):
            raise KeyStoreError(f"{where}: unexpected text after the quoted secret")
        return value[1:end]
    # Unquoted: " #" starts a comment, exactly as YAML reads it.
    m = re.search(r"\s#", value)
    if m:
        value = value[: m.start()].rstrip()
    return value


def _check_pair(key: Any, secret: Any, *, where: str, allow_weak: bool) -> None:
    prefix = f"{where}: " if where else ""
    if not isinstance(key, str) or not key:
        raise KeyStoreError(f"{prefix}API key is empty")
    if not _KEY_RE.fullmatch(key):
        # Not quoted: a malformed "key" is often part of a secret pasted wrongly.
        raise KeyStoreError(f"{prefix}API key must be 1-128 characters of A-Z a-z 0-9 _ . -")
    if not isinstance(secret, str) or not secret:
        raise KeyStoreError(f"{prefix}secret for API key {key!r} is empty")
    if not allow_weak and len(secret) < MIN_SECRET_CHARS:
        # State the rule, not the length: even the length is a hint to an attacker.
        raise KeyStoreError(
            f"{prefix}secret for API key {key!r} is too short "
            f"(at least {MIN_SECRET_CHARS} characters are required)"
        )


# --------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Grants:
    publish: bool = True
    subscribe: bool = True
    data: bool = True
    admin: bool = False

    def to_claim(self) -> dict[str, bool]:
        return {
            "publish": self.publish,
            "subscribe": self.subscribe,
            "data": self.data,
            "admin": self.admin,
        }


@dataclass(frozen=True)
class TokenClaims:
    api_key: str
    identity: str
    name: str
    room: str
    grants: Grants
    expires_at: float


def issue_token(
    key: str,
    secret: str,
    room: str,
    identity: str,
    name: str | None = None,
    ttl_s: int = DEFAULT_TTL_S,
    grants: Grants = Grants(),
    now: float | None = None,
) -> str:
    """Sign an access token for ``identity`` in ``room`` valid for ``ttl_s`` seconds."""
    if not room or not identity:
        raise ValueError("room and identity must be non-empty")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "iss": key,
        "sub": identity,
        "room": room,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl_s),
        "grants": grants.to_claim(),
    }
    if name is not None:
        payload["name"] = name
    with _quiet_key_length():
        return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify_token(
    token: str, keys: KeyStore, now: float | None = None, leeway_s: int = 10
) -> TokenClaims:
    """Check an access token and return its claims, or raise :class:`AuthError`.

    ``leeway_s`` absorbs clock skew between the token issuer and this server,
    applied to both ``exp`` and ``nbf``.
    """
    if not token or not isinstance(token, str):
        raise AuthError("missing access token")
    if token.count(".") != 2:
        raise AuthError("access token is not a JWT (expected three dot-separated parts)")
    if not token.isascii():
        # aiohttp hands header bytes over as surrogate escapes; PyJWT would
        # raise UnicodeEncodeError on them rather than a PyJWTError.
        raise AuthError("access token is not a JWT (it has characters outside base64url)")

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthError("access token is not a JWT (header is not valid base64url JSON)") from None
    # Checked here as well as via algorithms=[...] below: refusing "none" and
    # other algorithms must not hinge on one library option being right.
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise AuthError(
            f"token algorithm {_show(alg)} is not accepted; tokens must be signed with HS256"
        )

    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AuthError("access token is not a JWT (payload is not valid base64url JSON)") from None
    api_key = unverified.get("iss")
    if api_key is None:
        raise AuthError("token has no iss claim (the API key that signed it)")
    if not isinstance(api_key, str):
        raise AuthError("token iss claim must be a string (the API key)")
    secret = keys.secret_for(api_key)
    if secret is None:
        raise AuthError(f"unknown API key {_show(api_key)} in token iss claim")

    try:
        with _quiet_key_length():
            payload = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                # Time checks are done below against `now`, which PyJWT cannot
                # be given, and with our own messages.
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
    except jwt.InvalidSignatureError:
        raise AuthError(
            f"token signature does not match the secret of API key {_show(api_key)}"
        ) from None
    except jwt.InvalidAlgorithmError:
        raise AuthError(
            "token algorithm is not accepted; tokens must be signed with HS256"
        ) from None
    except jwt.PyJWTError as e:
        # PyJWT's messages describe structure only, never key material.
        raise AuthError(f"invalid access token: {e}") from None

    t = time.time() if now is None else now
    exp = _numeric_claim(payload, "exp", required=True)
    assert exp is not None
    if t > exp + leeway_s:
        raise AuthError(f"token expired at {_iso(exp)}")
    nbf = _numeric_claim(payload, "nbf", required=False)
    if nbf is not None and t + leeway_s < nbf:
        raise AuthError(f"token is not valid before {_iso(nbf)}")
    _numeric_claim(payload, "iat", required=False)

    identity = _string_claim(payload, "sub", "the participant identity")
    room = _string_claim(payload, "room", "the room name")
    name = payload.get("name")
    if name is None or name == "":
        # A display name is optional; the identity is the next best label.
        name = identity
    elif not isinstance(name, str):
        raise AuthError("token name claim must be a string")

    return TokenClaims(
        api_key=api_key,
        identity=identity,
        name=name,
        room=room,
        grants=_grants(payload.get("grants")),
        expires_at=float(exp),
    )


def _numeric_claim(payload: Mapping[str, Any], claim: str, *, required: bool) -> float | None:
    value = payload.get(claim)
    if value is None:
        if required:
            raise AuthError(f"token has no {claim} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError(f"token {claim} claim must be a number of seconds since the epoch")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise AuthError(f"token {claim} claim must be a finite number of seconds")
    return seconds


MAX_CLAIM_CHARS = 128


def _string_claim(payload: Mapping[str, Any], claim: str, meaning: str) -> str:
    value = payload.get(claim)
    if value is None or value == "":
        raise AuthError(f"token has no {claim} claim ({meaning})")
    if not isinstance(value, str):
        raise AuthError(f"token {claim} claim ({meaning}) must be a string")
    # The same rules as ids in the protocol (docs/protocol.md §5): a room or
    # identity that could not be named in a message or a URL is refused here.
    if len(value) > MAX_CLAIM_CHARS:
        raise AuthError(
            f"token {claim} claim ({meaning}) is {len(value)} characters; "
            f"the limit is {MAX_CLAIM_CHARS}"
        )
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise AuthError(f"token {claim} claim ({meaning}) contains a control character")
    return value


def _grants(raw: Any) -> Grants:
    if raw is None:
        return Grants()
    if not isinstance(raw, dict):
        raise AuthError("token grants claim must be an object")
    values: dict[str, bool] = {}
    # Unknown grant names are ignored so newer issuers work with older servers.
    for name, default in Grants().to_claim().items():
        value = raw.get(name, default)
        if not isinstance(value, bool):
            raise AuthError(f"token grants.{name} must be true or false")
        values[name] = value
    return Grants(**values)


@contextmanager
def _quiet_key_length() -> Iterator[None]:
    """Silence PyJWT's per-call warning about HMAC keys shorter than 32 bytes.

    Our secret policy is enforced once, when keys are loaded; repeating a
    warning on every connection would only bury real warnings.  (The warnings
    filter is process-global, which is fine on a single-threaded event loop.)
    """
    with warnings.catch_warnings():
        if _KEY_LENGTH_WARNING is not None:
            warnings.simplefilter("ignore", _KEY_LENGTH_WARNING)
        yield


def _show(value: Any) -> str:
    if isinstance(value, str):
        if len(value) > _SHOW_CHARS:
            value = value[:_SHOW_CHARS] + "..."
        return json.dumps(value)
    return "null" if value is None else type(value).__name__


def _iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{ts:.0f} (seconds since the epoch)"


# --------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------

_DURATION_RE: Final = re.compile(r"([0-9]{1,12})([smhd]?)", re.ASCII)
_UNIT_SECONDS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in ``"90s"``, ``"10m"``, ``"6h"``, ``"7d"`` or a plain ``"3600"``."""
    m = _DURATION_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(
            f"invalid duration {text!r}: expected a whole number with an optional unit "
            "s, m, h or d (e.g. 90s, 10m, 6h, 7d)"
        )
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
