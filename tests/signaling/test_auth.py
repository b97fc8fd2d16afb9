"""Tests for signaling/auth.py: key stores, issuing, every refusal, durations."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import jwt
import pytest

from signaling.auth import (
    AuthError,
    Grants,
    KeyStore,
    KeyStoreError,
    TokenClaims,
    issue_token,
    parse_duration,
    verify_token,
)

NOW = 1_750_000_000.0
KEY = "APIkey1"
SECRET = "s3cret-for-tests-0123456789abcdef"
OTHER_KEY = "APIkey2"
OTHER_SECRET = "another-secret-for-tests-9876543210"
KEYS = KeyStore({KEY: SECRET})


def b64url(obj: object) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def payload(**overrides: object) -> dict[str, object]:
    p: dict[str, object] = {
        "iss": KEY,
        "sub": "alice",
        "name": "Alice",
        "room": "standup",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 3600,
    }
    p.update(overrides)
    return {k: v for k, v in p.items() if v is not None}


def sign(p: dict[str, object], secret: str = SECRET, alg: str = "HS256") -> str:
    # Signed by hand rather than with jwt.encode, which refuses some of the
    # malformed claims we need (e.g. a non-string iss) and warns on key length.
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    signing_input = f"{b64url({'alg': alg, 'typ': 'JWT'})}.{b64url(p)}"
    mac = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


# --------------------------------------------------------------------------
# Issue / verify
# --------------------------------------------------------------------------


def test_issue_then_verify() -> None:
    token = issue_token(KEY, SECRET, "standup", "alice", name="Alice", ttl_s=600, now=NOW)
    claims = verify_token(token, KEYS, now=NOW + 1)
    assert claims == TokenClaims(
        api_key=KEY,
        identity="alice",
        name="Alice",
        room="standup",
        grants=Grants(publish=True, subscribe=True, data=True, admin=False),
        expires_at=NOW + 600,
    )
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    body = jwt.decode(token, options={"verify_signature": False})
    assert body["iat"] == body["nbf"] == int(NOW)
    assert body["exp"] == int(NOW) + 600
    assert body["grants"] == {"publish": True, "subscribe": True, "data": True, "admin": False}


def test_custom_grants_round_trip() -> None:
    g = Grants(publish=False, subscribe=True, data=False, admin=True)
    token = issue_token(KEY, SECRET, "r", "viewer", grants=g, now=NOW)
    assert verify_token(token, KEYS, now=NOW).grants == g


def test_missing_grants_and_name_use_defaults() -> None:
    claims = verify_token(sign(payload(name=None)), KEYS, now=NOW)
    assert claims.grants == Grants(publish=True, subscribe=True, data=True, admin=False)
    assert claims.name == "alice"  # falls back to the identity
    partial = verify_token(sign(payload(grants={"publish": False, "future": 1})), KEYS, now=NOW)
    assert partial.grants == Grants(publish=False, subscribe=True, data=True, admin=False)


def test_leeway_absorbs_small_clock_skew() -> None:
    token = sign(payload(nbf=int(NOW) + 5, exp=int(NOW) + 100))
    verify_token(token, KEYS, now=NOW)  # nbf 5 s ahead, inside the 10 s leeway
    verify_token(token, KEYS, now=NOW + 105)  # expired 5 s ago, inside the leeway
    with pytest.raises(AuthError):
        verify_token(token, KEYS, now=NOW + 105, leeway_s=0)


def test_issue_token_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        issue_token(KEY, SECRET, "", "alice", now=NOW)
    with pytest.raises(ValueError):
        issue_token(KEY, SECRET, "room", "alice", ttl_s=0, now=NOW)


def test_issue_token_does_not_warn_for_short_dev_secret(recwarn: pytest.WarningsRecorder) -> None:
    dev = KeyStore.dev()
    token = issue_token("devkey", "devsecret", "r", "a", now=NOW)
    verify_token(token, dev, now=NOW)
    assert not [w for w in recwarn if "HMAC key" in str(w.message)]


def _alg_none_token() -> str:
    # Built by hand: libraries rightly refuse to produce it.
    return f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(payload())}."


# Kept one case per line or two for scanning; the formatter would explode it.
# fmt: off
REFUSED: list[tuple[str, str, str]] = [
    ("empty", "", "missing access token"),
    ("garbage", "not-a-token", "not a JWT"),
    ("garbage three parts", "aaa.bbb.ccc", "not a JWT"),
    ("header not json", f"{b64url('x')[:-2]}.{b64url(payload())}.sig", "not a JWT"),
    ("alg none", _alg_none_token(), 'token algorithm "none" is not accepted'),
    ("alg none, signed anyway",
     f"{b64url({'alg': 'none'})}.{b64url(payload())}.AAAA", 'algorithm "none"'),
    ("alg HS512", sign(payload(), alg="HS512"), 'token algorithm "HS512" is not accepted'),
    ("alg missing", f"{b64url({'typ': 'JWT'})}.{b64url(payload())}.AAAA", "algorithm null"),
    ("expired", sign(payload(exp=int(NOW) - 60)), "token expired at 2025-06-15T15:05:40Z"),
    ("nbf in future", sign(payload(nbf=int(NOW) + 3600)),
     "token is not valid before 2025-06-15T16:06:40Z"),
    ("wrong secret", sign(payload(), secret="wrong-secret-0123456789abcdef0123"),
     'token signature does not match the secret of API key "APIkey1"'),
    ("unknown key", sign(payload(iss="APInope")), 'unknown API key "APInope"'),
    ("no iss", sign(payload(iss=None)), "token has no iss claim"),
    ("iss not string", sign(payload(iss=5)), "iss claim must be a string"),
    ("missing sub", sign(payload(sub=None)), "token has no sub claim"),
    ("empty sub", sign(payload(sub="")), "token has no sub claim"),
    ("missing room", sign(payload(room=None)), "token has no room claim"),
    ("room not string", sign(payload(room=["a"])), "room claim (the room name) must be a string"),
    ("missing exp", sign(payload(exp=None)), "token has no exp claim"),
    ("exp not number", sign(payload(exp="tomorrow")), "exp claim must be a number"),
    ("name not string", sign(payload(name=3)), "name claim must be a string"),
    ("grants not object", sign(payload(grants=True)), "grants claim must be an object"),
    ("grant not bool", sign(payload(grants={"publish": "yes"})),
     "grants.publish must be true or false"),
    ("admin grant not bool", sign(payload(grants={"admin": 1})), "grants.admin must be true"),
    ("room too long", sign(payload(room="r" * 129)), "the limit is 128"),
    ("identity with a newline", sign(payload(sub="a\nb")), "contains a control character"),
    ("room with NUL", sign(payload(room="a\x00")), "contains a control character"),
]
# fmt: on


@pytest.mark.parametrize(
    ("token", "fragment"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_refused_tokens(token: str, fragment: str) -> None:
    with pytest.raises(AuthError) as info:
        verify_token(token, KEYS, now=NOW)
    msg = info.value.message
    assert fragment in msg, msg
    assert str(info.value) == msg
    assert SECRET not in msg
    # Neither the token nor its signature is echoed back.
    signature = token.rsplit(".", 1)[-1]
    if len(signature) > 8:
        assert token not in msg and signature not in msg


def test_alg_none_refused_even_if_header_check_were_bypassed() -> None:
    # Belt and braces: the library call itself is restricted to HS256 too.
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(_alg_none_token(), SECRET, algorithms=["HS256"])


def test_rotation_with_two_keys() -> None:
    both = KeyStore({KEY: SECRET, OTHER_KEY: OTHER_SECRET})
    old = issue_token(KEY, SECRET, "r", "a", now=NOW)
    new = issue_token(OTHER_KEY, OTHER_SECRET, "r", "b", now=NOW)
    assert verify_token(old, both, now=NOW).api_key == KEY
    assert verify_token(new, both, now=NOW).identity == "b"
    # A token signed with the other key's secret must not pass under this iss.
    crossed = issue_token(KEY, OTHER_SECRET, "r", "a", now=NOW)
    with pytest.raises(AuthError, match="signature does not match"):
        verify_token(crossed, both, now=NOW)
    # After the old key is retired, its tokens stop working.
    retired = KeyStore({OTHER_KEY: OTHER_SECRET})
    with pytest.raises(AuthError, match="unknown API key"):
        verify_token(old, retired, now=NOW)
    assert verify_token(new, retired, now=NOW).identity == "b"


# --------------------------------------------------------------------------
# KeyStore parsing
# --------------------------------------------------------------------------


def test_dev_keystore() -> None:
    ks = KeyStore.dev()
    assert ks.is_dev
    assert ks.keys() == ["devkey"]
    assert ks.secret_for("devkey") == "devsecret"
    assert not KeyStore.from_env("k:12345678").is_dev


def test_from_env() -> None:
    ks = KeyStore.from_env(f" {KEY}:{SECRET} , {OTHER_KEY}:{OTHER_SECRET},")
    assert ks.keys() == [KEY, OTHER_KEY]
    assert ks.secret_for(OTHER_KEY) == OTHER_SECRET
    assert KEY in ks and "nope" not in ks and len(ks) == 2
    # A secret may contain ":"; only the first one separates key and secret.
    assert KeyStore.from_env("k:abc:defgh").secret_for("k") == "abc:defgh"


def test_repr_never_shows_secrets() -> None:
    ks = KeyStore.from_env(f"{KEY}:{SECRET}")
    assert SECRET not in repr(ks) and KEY in repr(ks)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "no API keys configured"),
        (" , ", "no API keys configured"),
        ("justasecretvalue", "entry 1: expected 'key:secret'"),
        (f"{KEY}:{SECRET},k2", "entry 2: expected 'key:secret'"),
        ("k:tiny", "entry 1: secret for API key 'k' is too short (at least 8 characters"),
        (f"{KEY}:{SECRET},{KEY}:{OTHER_SECRET}", "entry 2: API key 'APIkey1' is defined more"),
        (":secretvalue", "entry 1: API key is empty"),
        ("k:", "entry 1: secret for API key 'k' is empty"),
        ("bad key:secretvalue", "entry 1: API key must be 1-128 characters"),
    ],
)
def test_from_env_errors(value: str, fragment: str) -> None:
    with pytest.raises(KeyStoreError) as info:
        KeyStore.from_env(value)
    assert fragment in str(info.value)
    for secret in ("secretvalue", "tiny", SECRET, OTHER_SECRET, "justasecretvalue"):
        assert secret not in str(info.value)


def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(
        "# API keys for the SFU\n"
        "---\n"
        "\n"
        f"{KEY}: {SECRET}\n"
        f"{OTHER_KEY}:{OTHER_SECRET}   # added for rotation\n"
        'quoted: "has # hash and: colon"\n'
        "single: 'single-quoted' # comment\n"
        "hashy: abc#defgh\n"
        "   indented: indented-secret\n",
        encoding="utf-8",
    )
    ks = KeyStore.from_file(path)
    assert ks.keys() == [KEY, OTHER_KEY, "quoted", "single", "hashy", "indented"]
    assert ks.secret_for(KEY) == SECRET
    assert ks.secret_for(OTHER_KEY) == OTHER_SECRET
    assert ks.secret_for("quoted") == "has # hash and: colon"
    assert ks.secret_for("single") == "single-quoted"
    assert ks.secret_for("hashy") == "abc#defgh"  # no space before '#': not a comment
    assert ks.secret_for("indented") == "indented-secret"


# Kept one case per line or two for scanning; the formatter would explode it.
# fmt: off
FILE_ERRORS: list[tuple[str, str, str]] = [
    ("missing colon", f"{KEY}: {SECRET}\n\nTOPSECRETVALUE\n", "line 3: expected 'key: secret'"),
    ("short secret", f"# c\n{KEY}: {SECRET}\nk2: tiny123\n",
     "line 3: secret for API key 'k2' is too short"),
    ("short after comment strip", "k: abc #defghijk\n",
     "line 1: secret for API key 'k' is too short"),
    ("empty secret", "k:\n", "line 1: secret for API key 'k' is empty"),
    ("duplicate", f"{KEY}: {SECRET}\n{KEY}: {OTHER_SECRET}\n",
     "line 2: API key 'APIkey1' is already defined on line 1"),
    ("unterminated quote", 'k: "TOPSECRETVALUE\n', "line 1: unterminated \" quote"),
    ("text after quote", "k: 'TOPSECRETVALUE' extra\n", "line 1: unexpected text after"),
    ("bad key", "my key: TOPSECRETVALUE\n", "line 1: API key must be 1-128 characters"),
    ("only comments", "# nothing\n\n", "no API keys found"),
]
# fmt: on


@pytest.mark.parametrize(
    ("content", "fragment"), [f[1:] for f in FILE_ERRORS], ids=[f[0] for f in FILE_ERRORS]
)
def test_from_file_errors(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(KeyStoreError) as info:
        KeyStore.from_file(path)
    msg = str(info.value)
    assert fragment in msg, msg
    for secret in ("TOPSECRETVALUE", "tiny123", "abc", SECRET, OTHER_SECRET):
        assert secret not in msg


def test_from_file_missing(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="cannot read key file"):
        KeyStore.from_file(tmp_path / "absent.yaml")


def test_constructor_enforces_the_secret_policy() -> None:
    with pytest.raises(KeyStoreError, match="too short"):
        KeyStore({"k": "1234567"})
    with pytest.raises(KeyStoreError, match="no API keys"):
        KeyStore({})
    assert KeyStore({"k": "12345678"}).secret_for("k") == "12345678"


# --------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("10m", 600),
        ("6h", 21600),
        ("7d", 604800),
        ("3600", 3600),
        ("0", 0),
        (" 15m ", 900),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "h", "-5", "+5", "1.5h", "10M", "10 m", "1h30m", "5w", "ten", "٣s", "1" * 13]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)
