#!/usr/bin/env python3
"""End-to-end check of the generated Python client against a real `tokenmint serve`.

Starts its own server (free port, temporary data directory), bootstraps a caller with the CLI, and
then, through the stubs that generate.sh produced in gen/:

  create a template -> mint a token from it -> verify it (active) -> verify it offline with the
  JWKS document and PyJWT -> check its status offline in its Token Status List (status_list.py):
  VALID -> revoke it -> verify it (inactive, REVOKED) -> its list entry reads INVALID -> decode
  the google.rpc error details (ErrorInfo, BadRequest, RequestInfo) of a failed call.

Usage: python e2e.py [--tokenmint PATH]   (default: ../../target/debug/tokenmint, from this file)
Prints one line per step and "python e2e: ok" at the end; exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
GEN = HERE / "gen"
if not (GEN / "tokenmint" / "v1" / "token_service_pb2.py").exists():
    sys.exit(f"python e2e: no generated stubs in {GEN}; run generate.sh first")
sys.path.insert(0, str(GEN))

import grpc  # noqa: E402
import jwt  # noqa: E402  (PyJWT)
from google.rpc import error_details_pb2  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_status import rpc_status  # noqa: E402

from tokenmint.v1 import template_service_pb2 as template_pb  # noqa: E402
from tokenmint.v1 import template_service_pb2_grpc as template_grpc  # noqa: E402
from tokenmint.v1 import token_pb2  # noqa: E402
from tokenmint.v1 import token_service_pb2 as token_pb  # noqa: E402
from tokenmint.v1 import token_service_pb2_grpc as token_grpc  # noqa: E402

import status_list  # noqa: E402  (beside this file)

SERVER_START_DEADLINE_S = 30.0
RPC_TIMEOUT_S = 10.0
CALLER_SCOPES = "user_manage,token_introspect,wallet_view"
CLIENT_IP = "10.1.2.3"


class CheckFailed(Exception):
    pass


def check(condition: object, message: str) -> None:
    """An assertion that survives `python -O`."""
    if not condition:
        raise CheckFailed(message)


def step(name: str, detail: str = "") -> None:
    print(f"ok  {name}" + (f": {detail}" if detail else ""), flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bootstrap(binary: str, data_dir: str) -> str:
    proc = subprocess.run(
        [binary, "bootstrap", "--data-dir", data_dir, "--user", "alice",
         "--scopes", CALLER_SCOPES, "--ttl", "1h", "--label", "python-e2e"],
        capture_output=True, text=True, timeout=60,
    )
    check(proc.returncode == 0, f"tokenmint bootstrap exited {proc.returncode}: {proc.stderr.strip()}")
    token = proc.stdout.strip()
    check(token.count(".") == 2 and "\n" not in token,
          f"bootstrap should print only a JWT on stdout, got {proc.stdout!r:.200}")
    return token


def wait_healthy(channel: grpc.Channel, server: subprocess.Popen, log_path: Path) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + SERVER_START_DEADLINE_S
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CheckFailed(f"tokenmint serve exited with {server.returncode} before becoming healthy\n"
                              + tail(log_path))
        try:
            resp = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            if resp.status == health_pb2.HealthCheckResponse.SERVING:
                return
            last_error = f"status {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}"
        except grpc.RpcError as err:
            last_error = f"{err.code().name}: {err.details()}"
        time.sleep(0.1)
    raise CheckFailed(f"server not healthy after {SERVER_START_DEADLINE_S:.0f}s (last: {last_error})\n"
                      + tail(log_path))


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no server log)"
    return "--- server log (tail) ---\n" + "\n".join(text[-lines:])


def stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    server.terminate()  # SIGTERM: the server drains and exits
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


def run(binary: str) -> None:
    with tempfile.TemporaryDirectory(prefix="tokenmint-py-e2e-") as tmp:
        data_dir = os.path.join(tmp, "data")
        log_path = Path(tmp) / "server.log"
        port = free_port()
        target = f"127.0.0.1:{port}"

        caller = bootstrap(binary, data_dir)
        step("bootstrap caller", f"alice with {CALLER_SCOPES}")

        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [binary, "serve", "--data-dir", data_dir, "--listen", target],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1"},  # plain server log, for the failure report
            )
        try:
            # Short reconnect backoff: the first health checks race the server's start.
            options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                       ("grpc.max_reconnect_backoff_ms", 500)]
            with grpc.insecure_channel(target, options=options) as channel:
                wait_healthy(channel, server, log_path)
                step("server healthy", target)
                try:
                    scenario(channel, caller, port)
                except CheckFailed as failure:
                    raise CheckFailed(f"{failure}\n{tail(log_path)}") from None
        finally:
            stop(server)


def scenario(channel: grpc.Channel, caller: str, port: int) -> None:
    auth = (("authorization", f"Bearer {caller}"),)
    tokens = token_grpc.TokenServiceStub(channel)
    templates = template_grpc.TemplateServiceStub(channel)

    # CreateTemplate
    template_name = f"python-e2e-{uuid.uuid4().hex[:8]}"
    created_tpl = templates.CreateTemplate(
        template_pb.CreateTemplateRequest(
            name=template_name, token_scopes=["wallet_view"], allowed_ips=["10.0.0.0/8"],
            default_duration_seconds=3600),
        metadata=auth, timeout=RPC_TIMEOUT_S,
    ).template
    check(created_tpl.id, "CreateTemplate returned no template id")
    check(created_tpl.name == template_name, f"template name {created_tpl.name!r} != {template_name!r}")
    check(list(created_tpl.token_scopes) == ["wallet_view"], f"template scopes {list(created_tpl.token_scopes)}")
    check(list(created_tpl.allowed_ips) == ["10.0.0.0/8"], f"template allowed_ips {list(created_tpl.allowed_ips)}")
    check(created_tpl.default_duration_seconds == 3600,
          f"template default_duration_seconds {created_tpl.default_duration_seconds}")
    check(created_tpl.version == 1, f"new template version should be 1, got {created_tpl.version}")
    step("CreateTemplate", f"id={created_tpl.id} version={created_tpl.version}")

    # CreateToken from the template
    created = tokens.CreateToken(
        token_pb.CreateTokenRequest(template_id=created_tpl.id), metadata=auth, timeout=RPC_TIMEOUT_S)
    raw_token, minted = created.raw_token, created.token
    check(raw_token.count(".") == 2, "CreateToken raw_token is not a compact JWT")
    check(minted.id, "CreateToken returned no token id")
    check(minted.template_id == created_tpl.id,
          f"token template_id {minted.template_id!r} != template id {created_tpl.id!r}")
    check(minted.template_version == 1, f"token template_version {minted.template_version}")
    check(list(minted.scopes) == ["wallet_view"], f"token scopes {list(minted.scopes)}")
    check(list(minted.ip_restrict) == ["10.0.0.0/8"], f"token ip_restrict {list(minted.ip_restrict)}")
    check(minted.user_id == "alice", f"token user_id {minted.user_id!r}")
    check(minted.status == token_pb2.TOKEN_STATUS_ACTIVE,
          f"new token status {token_pb2.TokenStatus.Name(minted.status)}")
    check(raw_token.endswith(minted.checksum) and len(minted.checksum) == 6,
          f"checksum {minted.checksum!r} is not the token's last 6 characters")
    lifetime = minted.expires_at.seconds - minted.created_at.seconds
    check(abs(lifetime - 3600) <= 2, f"token lifetime {lifetime}s, template default is 3600s")
    step("CreateToken", f"id={minted.id} from template, expires in {lifetime}s")

    # VerifyToken: active
    verified = tokens.VerifyToken(
        token_pb.VerifyTokenRequest(token=raw_token, client_ip=CLIENT_IP), metadata=auth, timeout=RPC_TIMEOUT_S)
    check(verified.active, f"fresh token should be active, reason {token_pb.InactiveReason.Name(verified.reason)}")
    check(verified.reason == token_pb.INACTIVE_REASON_UNSPECIFIED,
          f"active token reason {token_pb.InactiveReason.Name(verified.reason)}")
    check(verified.HasField("token") and verified.token.id == minted.id,
          "VerifyToken of an active token should return its metadata")
    step("VerifyToken", f"active from {CLIENT_IP}")

    # Offline verification: JWKS over HTTP + PyJWT, then the token's status list
    offline_verify(tokens, raw_token, minted, created_tpl.id, port)
    expect_list_status(raw_token, port, status_list.VALID, "status list after mint")

    # RevokeToken
    revoked = tokens.RevokeToken(token_pb.RevokeTokenRequest(id=minted.id), metadata=auth, timeout=RPC_TIMEOUT_S)
    check(revoked.token.status == token_pb2.TOKEN_STATUS_REVOKED,
          f"revoked token status {token_pb2.TokenStatus.Name(revoked.token.status)}")
    check(not revoked.token.available_actions.revoke, "a revoked token should not offer revoke again")
    step("RevokeToken", f"id={minted.id} status=TOKEN_STATUS_REVOKED")

    # VerifyToken: inactive, REVOKED
    verified = tokens.VerifyToken(
        token_pb.VerifyTokenRequest(token=raw_token, client_ip=CLIENT_IP), metadata=auth, timeout=RPC_TIMEOUT_S)
    check(not verified.active, "revoked token should be inactive")
    check(verified.reason == token_pb.INACTIVE_REASON_REVOKED,
          f"revoked token reason {token_pb.InactiveReason.Name(verified.reason)}, want INACTIVE_REASON_REVOKED")
    check(not verified.HasField("token"), "VerifyToken must not return metadata for an inactive token")
    step("VerifyToken after revoke", "active=false reason=INACTIVE_REASON_REVOKED")
    expect_list_status(raw_token, port, status_list.INVALID, "status list after revoke")

    # A failed call and its google.rpc details
    rich_error(tokens, auth)


def offline_verify(tokens: token_grpc.TokenServiceStub, raw_token: str, minted, template_id: str, port: int) -> None:
    url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    with urllib.request.urlopen(url, timeout=RPC_TIMEOUT_S) as resp:
        check(resp.status == 200, f"GET {url}: HTTP {resp.status}")
        jwks = json.load(resp)
    keys = jwks.get("keys")
    check(isinstance(keys, list) and keys, f"JWKS has no keys: {jwks}")

    # The HTTP document and the GetJwks RPC publish the same keys.
    rpc_kids = {k.kid for k in tokens.GetJwks(token_pb.GetJwksRequest(), timeout=RPC_TIMEOUT_S).keys}
    check(rpc_kids == {k.get("kid") for k in keys}, f"GetJwks kids {rpc_kids} differ from the HTTP JWKS")

    header = jwt.get_unverified_header(raw_token)
    check(header.get("typ") == "at+jwt", f"JWT typ {header.get('typ')!r}, want 'at+jwt'")
    check(header.get("alg") == "EdDSA", f"JWT alg {header.get('alg')!r}, want 'EdDSA'")
    kid = header.get("kid")
    check(kid == minted.key_id, f"JWT kid {kid!r} != token key_id {minted.key_id!r}")
    matching = [k for k in keys if k.get("kid") == kid]
    check(len(matching) == 1, f"JWKS should hold exactly one key with kid {kid!r}, has {len(matching)}")
    jwk = matching[0]
    check((jwk.get("kty"), jwk.get("crv"), jwk.get("alg")) == ("OKP", "Ed25519", "EdDSA"),
          f"unexpected JWK type: {jwk}")
    check(jwk.get("use") == "sig", f"JWK use {jwk.get('use')!r}, want 'sig'")

    key = jwt.PyJWK(jwk)  # an Ed25519 public key via cryptography
    claims = jwt.decode(
        raw_token, key.key, algorithms=["EdDSA"], audience="tokenmint", issuer="tokenmint",
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    check(claims["sub"] == "alice", f"sub {claims['sub']!r}")
    check(claims["jti"] == minted.id, f"jti {claims['jti']!r} != token id {minted.id!r}")
    check(claims.get("tpl") == template_id, f"tpl claim {claims.get('tpl')!r} != template id {template_id!r}")
    check(claims.get("scope", "").split() == ["wallet_view"], f"scope claim {claims.get('scope')!r}")
    check("ips" in claims, f"ips claim missing from an IP-restricted token: {sorted(claims)}")
    check(claims["exp"] == minted.expires_at.seconds, f"exp {claims['exp']} != expires_at {minted.expires_at.seconds}")

    # The same key must reject a tampered signature.
    head, payload, sig = raw_token.split(".")
    tampered = f"{head}.{payload}.{('A' if sig[0] != 'A' else 'B')}{sig[1:]}"
    try:
        jwt.decode(tampered, key.key, algorithms=["EdDSA"], audience="tokenmint", issuer="tokenmint")
    except jwt.InvalidSignatureError:
        pass
    else:
        raise CheckFailed("PyJWT accepted a token with a tampered signature")
    step("offline verify (JWKS + PyJWT)", f"kid={kid} typ=at+jwt tpl={claims['tpl']} ips={claims['ips']}")


# A server reuses a rendered list for up to 1 s (status_list.render_cache_ms).
LIST_RENDER_WAIT_S = 5.0


def expect_list_status(raw_token: str, port: int, want: int, name: str) -> None:
    """Reads the token's status offline from its status list until it is `want` (or fails)."""
    url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    with urllib.request.urlopen(url, timeout=RPC_TIMEOUT_S) as resp:
        keys = {k["kid"]: jwt.PyJWK(k) for k in json.load(resp)["keys"]}
    deadline = time.monotonic() + LIST_RENDER_WAIT_S
    while True:
        status = status_list.token_status(raw_token, keys, issuer="tokenmint")
        if status == want:
            break
        check(time.monotonic() < deadline, f"the token's list entry reads {status}, want {want}")
        time.sleep(0.2)
    reference = jwt.decode(raw_token, options={"verify_signature": False})["status"]["status_list"]
    check(reference["uri"].startswith(f"http://127.0.0.1:{port}/statuslists/"),
          f"status list uri {reference['uri']!r} is not this server's")
    step(name, f"idx={reference['idx']} reads {status}")


def rich_error(tokens: token_grpc.TokenServiceStub, auth) -> None:
    request_id = f"python-e2e-{uuid.uuid4()}"
    try:
        tokens.CreateToken(
            token_pb.CreateTokenRequest(label="python e2e bogus", scopes=["bogus"]),
            metadata=auth + (("x-request-id", request_id),), timeout=RPC_TIMEOUT_S)
    except grpc.RpcError as err:
        failed = err
    else:
        raise CheckFailed("CreateToken with scope 'bogus' should fail")
    check(failed.code() == grpc.StatusCode.INVALID_ARGUMENT,
          f"bogus scope: code {failed.code().name}, want INVALID_ARGUMENT")

    status = rpc_status.from_call(failed)
    check(status is not None, "failed call carries no grpc-status-details-bin trailer")
    check(status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0],
          f"google.rpc.Status code {status.code}, want INVALID_ARGUMENT")

    infos, bad_requests, request_infos = [], [], []
    for detail in status.details:
        for cls, found in ((error_details_pb2.ErrorInfo, infos),
                           (error_details_pb2.BadRequest, bad_requests),
                           (error_details_pb2.RequestInfo, request_infos)):
            if detail.Is(cls.DESCRIPTOR):
                msg = cls()
                detail.Unpack(msg)
                found.append(msg)
    check(len(infos) == 1, f"want one ErrorInfo, got {len(infos)} among {[d.type_url for d in status.details]}")
    info = infos[0]
    check(info.reason == "INVALID_SCOPE", f"ErrorInfo reason {info.reason!r}, want 'INVALID_SCOPE'")
    check(info.domain == "tokenmint", f"ErrorInfo domain {info.domain!r}, want 'tokenmint'")
    check(info.metadata.get("scope") == "bogus", f"ErrorInfo metadata {dict(info.metadata)}")

    check(len(bad_requests) == 1, f"want one BadRequest, got {len(bad_requests)}")
    fields = [v.field for v in bad_requests[0].field_violations]
    check(fields == ["scopes[0]"], f"BadRequest field violations {fields}, want ['scopes[0]']")

    check(len(request_infos) == 1, f"want one RequestInfo, got {len(request_infos)}")
    check(request_infos[0].request_id == request_id,
          f"RequestInfo request_id {request_infos[0].request_id!r}, want the x-request-id sent {request_id!r}")
    step("error details", f"INVALID_ARGUMENT ErrorInfo{{reason={info.reason} domain={info.domain}}} "
                          f"BadRequest{fields} RequestInfo{{request_id={request_id}}}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenmint", default=str(HERE / ".." / ".." / "target" / "debug" / "tokenmint"),
                        help="path to the tokenmint binary (default: %(default)s)")
    args = parser.parse_args()
    binary = os.path.abspath(args.tokenmint)
    if not os.access(binary, os.X_OK):
        print(f"python e2e: FAILED: no executable tokenmint at {binary} (build it with cargo build)", file=sys.stderr)
        return 2
    try:
        run(binary)
    except CheckFailed as failure:
        print(f"python e2e: FAILED: {failure}", file=sys.stderr)
        return 1
    except grpc.RpcError as err:
        print(f"python e2e: FAILED: unexpected RPC error {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    except jwt.PyJWTError as err:
        print(f"python e2e: FAILED: offline verification: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    except status_list.StatusListError as err:
        print(f"python e2e: FAILED: status list: {err}", file=sys.stderr)
        return 1
    print("python e2e: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
