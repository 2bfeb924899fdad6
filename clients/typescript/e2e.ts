/**
 * End-to-end check of the generated TypeScript client against a real `tokenmint serve`.
 *
 * Starts its own server (free port, temporary data directory), bootstraps a caller with the CLI,
 * and then, through the Connect client over the gRPC protocol and the code that generate.sh
 * produced in gen/:
 *
 *   create a template -> mint a token from it -> verify it (active) -> verify it offline with the
 *   JWKS document and jose -> read its entry in its Token Status List (signature and claims by
 *   jose, the list by @sd-jwt/jwt-status-list, an independent implementation of the draft):
 *   VALID -> revoke it -> verify it (inactive, REVOKED) -> its entry reads INVALID -> read the
 *   google.rpc error details (ErrorInfo, BadRequest, RequestInfo) of a failed call.
 *
 * Usage: npx tsx e2e.ts [--tokenmint PATH]   (default: ../../target/debug/tokenmint, from this file)
 * Prints one line per step and "typescript e2e: ok" at the end; exits non-zero on the first failure.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { type Client, Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { getListFromStatusListJWT } from "@sd-jwt/jwt-status-list";
import * as jose from "jose";

import type { Token } from "./gen/tokenmint/v1/token_pb.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
if (!fs.existsSync(path.join(HERE, "gen", "tokenmint", "v1", "token_service_pb.ts"))) {
  console.error(`typescript e2e: no generated code in ${path.join(HERE, "gen")}; run generate.sh first`);
  process.exit(2);
}
// The generated modules are loaded after that check, so that a missing gen/ gives its message
// rather than a module-resolution stack trace (`import type` above is erased at run time).
const { BadRequestSchema, ErrorInfoSchema, RequestInfoSchema } = await import("./gen/google/rpc/error_details_pb.js");
const { Health, HealthCheckResponse_ServingStatus: ServingStatus } = await import("./gen/health/v1/health_pb.js");
const { TemplateService } = await import("./gen/tokenmint/v1/template_service_pb.js");
const { TokenStatus } = await import("./gen/tokenmint/v1/token_pb.js");
const { InactiveReason, TokenService } = await import("./gen/tokenmint/v1/token_service_pb.js");

const SERVER_START_DEADLINE_MS = 30_000;
const RPC_TIMEOUT_MS = 10_000;
const CALLER_SCOPES = "user_manage,token_introspect,wallet_view";
const CLIENT_IP = "10.1.2.3";

type TokenClient = Client<typeof TokenService>;
type CallHeaders = Record<string, string>;

class CheckFailed extends Error {}

/** An assertion that also narrows types for tsc. */
function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new CheckFailed(message);
}

function step(name: string, detail = ""): void {
  console.log(`ok  ${name}${detail ? `: ${detail}` : ""}`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

function bootstrap(binary: string, dataDir: string): string {
  const proc = spawnSync(
    binary,
    ["bootstrap", "--data-dir", dataDir, "--user", "alice", "--scopes", CALLER_SCOPES, "--ttl", "1h",
      "--label", "typescript-e2e"],
    { encoding: "utf8", timeout: 60_000 },
  );
  check(proc.error === undefined, `tokenmint bootstrap did not run: ${proc.error?.message}`);
  check(proc.status === 0, `tokenmint bootstrap exited ${proc.status ?? proc.signal}: ${proc.stderr.trim()}`);
  const token = proc.stdout.trim();
  check(token.split(".").length === 3 && !token.includes("\n"),
    `bootstrap should print only a JWT on stdout, got ${JSON.stringify(proc.stdout.slice(0, 200))}`);
  return token;
}

function tail(logPath: string, lines = 30): string {
  try {
    const text = fs.readFileSync(logPath, "utf8").split("\n");
    if (text.at(-1) === "") text.pop();
    return "--- server log (tail) ---\n" + text.slice(-lines).join("\n");
  } catch {
    return "(no server log)";
  }
}

// No pid: the spawn itself failed (its "error" event says why).
const exited = (server: ChildProcess) =>
  server.pid === undefined || server.exitCode !== null || server.signalCode !== null;

async function waitHealthy(transport: Transport, server: ChildProcess, logPath: string): Promise<void> {
  // The first checks race the server's start; after a refused connection, Connect opens a new one
  // on the next call.
  const health = createClient(Health, transport);
  const deadline = Date.now() + SERVER_START_DEADLINE_MS;
  let lastError = "no attempt";
  while (Date.now() < deadline) {
    if (exited(server)) {
      await sleep(100); // let a spawn error reach the log
      throw new CheckFailed(`tokenmint serve exited with ${server.exitCode ?? server.signalCode ?? "an error"} `
        + `before becoming healthy\n${tail(logPath)}`);
    }
    try {
      const resp = await health.check({ service: "" }, { timeoutMs: 1_000 });
      if (resp.status === ServingStatus.SERVING) return;
      lastError = `status ${ServingStatus[resp.status]}`;
    } catch (err) {
      const error = ConnectError.from(err);
      lastError = `${Code[error.code]}: ${error.rawMessage}`;
    }
    await sleep(100);
  }
  throw new CheckFailed(`server not healthy after ${SERVER_START_DEADLINE_MS / 1000}s (last: ${lastError})\n`
    + tail(logPath));
}

/** SIGTERM (the server drains and exits), then SIGKILL if it has not gone after 10 s. */
async function stop(server: ChildProcess): Promise<void> {
  if (exited(server)) return;
  const gone = new Promise<void>((resolve) => server.once("exit", () => resolve()));
  server.kill("SIGTERM");
  const timer = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 10_000).unref());
  if (await Promise.race([gone.then(() => true), timer])) return;
  server.kill("SIGKILL");
  await gone;
}

async function run(binary: string): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tokenmint-ts-e2e-"));
  let server: ChildProcess | undefined;
  // Whatever ends this process (a failed check, an uncaught error, Ctrl-C), the server goes too.
  const killServer = () => { if (server && !exited(server)) server.kill("SIGKILL"); };
  const onSignal = (signal: NodeJS.Signals) => {
    killServer();
    fs.rmSync(tmp, { recursive: true, force: true }); // the `finally` below will not run
    console.error(`typescript e2e: FAILED: interrupted by ${signal}`);
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  process.once("exit", killServer);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const dataDir = path.join(tmp, "data");
    const logPath = path.join(tmp, "server.log");
    const port = await freePort();
    const target = `127.0.0.1:${port}`;

    const caller = bootstrap(binary, dataDir);
    step("bootstrap caller", `alice with ${CALLER_SCOPES}`);

    const log = fs.openSync(logPath, "w");
    server = spawn(binary, ["serve", "--data-dir", dataDir, "--listen", target], {
      stdio: ["ignore", log, log],
      env: { ...process.env, NO_COLOR: "1" }, // plain server log, for the failure report
    });
    fs.closeSync(log);
    // A failed spawn is reported through this event (unhandled, it would crash the script).
    server.once("error", (err) => fs.appendFileSync(logPath, `could not start tokenmint serve: ${err.message}\n`));

    // Connect's gRPC transport: HTTP/2 without TLS (h2c) to the plaintext test server. Its own
    // session manager, to close the connection at the end rather than wait for it to idle out.
    const baseUrl = `http://${target}`;
    const session = new Http2SessionManager(baseUrl);
    const transport = createGrpcTransport({ baseUrl, sessionManager: session, defaultTimeoutMs: RPC_TIMEOUT_MS });
    try {
      await waitHealthy(transport, server, logPath);
      step("server healthy", target);
      try {
        await scenario(createClient(TokenService, transport), createClient(TemplateService, transport), caller, port);
      } catch (failure) {
        if (failure instanceof CheckFailed) throw new CheckFailed(`${failure.message}\n${tail(logPath)}`);
        throw failure;
      }
    } finally {
      session.abort();
      await stop(server);
    }
  } finally {
    killServer();
    process.removeListener("exit", killServer);
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

async function scenario(tokens: TokenClient, templates: Client<typeof TemplateService>, caller: string,
  port: number): Promise<void> {
  const headers: CallHeaders = { authorization: `Bearer ${caller}` };

  // CreateTemplate
  const templateName = `typescript-e2e-${randomUUID().slice(0, 8)}`;
  const { template } = await templates.createTemplate(
    { name: templateName, tokenScopes: ["wallet_view"], allowedIps: ["10.0.0.0/8"], defaultDurationSeconds: 3600n },
    { headers },
  );
  check(template, "CreateTemplate returned no template");
  check(template.id, "CreateTemplate returned no template id");
  check(template.name === templateName, `template name ${JSON.stringify(template.name)} != ${JSON.stringify(templateName)}`);
  check(sameList(template.tokenScopes, ["wallet_view"]), `template scopes ${JSON.stringify(template.tokenScopes)}`);
  check(sameList(template.allowedIps, ["10.0.0.0/8"]), `template allowed_ips ${JSON.stringify(template.allowedIps)}`);
  // int64 fields are bigint in protobuf-es v2.
  check(template.defaultDurationSeconds === 3600n,
    `template default_duration_seconds ${template.defaultDurationSeconds}`);
  check(template.version === 1n, `new template version should be 1, got ${template.version}`);
  step("CreateTemplate", `id=${template.id} version=${template.version}`);

  // CreateToken from the template
  const created = await tokens.createToken({ templateId: template.id }, { headers });
  const rawToken = created.rawToken;
  const minted = created.token;
  check(rawToken.split(".").length === 3, "CreateToken raw_token is not a compact JWT");
  check(minted, "CreateToken returned no token metadata");
  check(minted.id, "CreateToken returned no token id");
  check(minted.templateId === template.id,
    `token template_id ${JSON.stringify(minted.templateId)} != template id ${JSON.stringify(template.id)}`);
  check(minted.templateVersion === 1n, `token template_version ${minted.templateVersion}`);
  check(sameList(minted.scopes, ["wallet_view"]), `token scopes ${JSON.stringify(minted.scopes)}`);
  check(sameList(minted.ipRestrict, ["10.0.0.0/8"]), `token ip_restrict ${JSON.stringify(minted.ipRestrict)}`);
  check(minted.userId === "alice", `token user_id ${JSON.stringify(minted.userId)}`);
  check(minted.status === TokenStatus.ACTIVE, `new token status ${TokenStatus[minted.status]}`);
  check(rawToken.endsWith(minted.checksum) && minted.checksum.length === 6,
    `checksum ${JSON.stringify(minted.checksum)} is not the token's last 6 characters`);
  check(minted.createdAt && minted.expiresAt, "CreateToken returned no created_at/expires_at");
  const lifetime = Number(minted.expiresAt.seconds - minted.createdAt.seconds);
  check(Math.abs(lifetime - 3600) <= 2, `token lifetime ${lifetime}s, template default is 3600s`);
  step("CreateToken", `id=${minted.id} from template, expires in ${lifetime}s`);

  // VerifyToken: active
  let verified = await tokens.verifyToken({ token: rawToken, clientIp: CLIENT_IP }, { headers });
  check(verified.active, `fresh token should be active, reason ${InactiveReason[verified.reason]}`);
  check(verified.reason === InactiveReason.UNSPECIFIED, `active token reason ${InactiveReason[verified.reason]}`);
  check(verified.token?.id === minted.id, "VerifyToken of an active token should return its metadata");
  step("VerifyToken", `active from ${CLIENT_IP}`);

  // Offline verification: JWKS over HTTP + jose
  await offlineVerify(tokens, rawToken, minted, template.id, port);
  await expectListStatus(tokens, rawToken, port, STATUS_VALID, "status list after mint");

  // RevokeToken
  const revoked = await tokens.revokeToken({ id: minted.id }, { headers });
  check(revoked.token?.status === TokenStatus.REVOKED,
    `revoked token status ${revoked.token ? TokenStatus[revoked.token.status] : "(no token)"}`);
  check(revoked.token.availableActions && !revoked.token.availableActions.revoke,
    "a revoked token should not offer revoke again");
  step("RevokeToken", `id=${minted.id} status=TOKEN_STATUS_REVOKED`);

  // VerifyToken: inactive, REVOKED
  verified = await tokens.verifyToken({ token: rawToken, clientIp: CLIENT_IP }, { headers });
  check(!verified.active, "revoked token should be inactive");
  check(verified.reason === InactiveReason.REVOKED,
    `revoked token reason ${InactiveReason[verified.reason]}, want REVOKED`);
  check(verified.token === undefined, "VerifyToken must not return metadata for an inactive token");
  step("VerifyToken after revoke", "active=false reason=INACTIVE_REASON_REVOKED");
  await expectListStatus(tokens, rawToken, port, STATUS_INVALID, "status list after revoke");

  // A failed call and its google.rpc details
  await richError(tokens, headers);
}

function sameList(actual: readonly string[], expected: readonly string[]): boolean {
  return actual.length === expected.length && actual.every((value, i) => value === expected[i]);
}

async function offlineVerify(tokens: TokenClient, rawToken: string, minted: Token, templateId: string,
  port: number): Promise<void> {
  const url = `http://127.0.0.1:${port}/.well-known/jwks.json`;
  const resp = await fetch(url, { signal: AbortSignal.timeout(RPC_TIMEOUT_MS) });
  check(resp.status === 200, `GET ${url}: HTTP ${resp.status}`);
  const jwks = (await resp.json()) as { keys?: jose.JWK[] };
  const keys = jwks.keys;
  check(Array.isArray(keys) && keys.length > 0, `JWKS has no keys: ${JSON.stringify(jwks)}`);

  // The HTTP document and the GetJwks RPC publish the same keys (GetJwks needs no authorization).
  const rpcKids = new Set((await tokens.getJwks({})).keys.map((k) => k.kid));
  const httpKids = new Set(keys.map((k) => k.kid));
  check(rpcKids.size === httpKids.size && [...rpcKids].every((kid) => httpKids.has(kid)),
    `GetJwks kids ${JSON.stringify([...rpcKids])} differ from the HTTP JWKS ${JSON.stringify([...httpKids])}`);

  const header = jose.decodeProtectedHeader(rawToken);
  check(header.typ === "at+jwt", `JWT typ ${JSON.stringify(header.typ)}, want "at+jwt"`);
  check(header.alg === "EdDSA", `JWT alg ${JSON.stringify(header.alg)}, want "EdDSA"`);
  const kid = header.kid;
  check(kid === minted.keyId, `JWT kid ${JSON.stringify(kid)} != token key_id ${JSON.stringify(minted.keyId)}`);
  const matching = keys.filter((k) => k.kid === kid);
  check(matching.length === 1, `JWKS should hold exactly one key with kid ${kid}, has ${matching.length}`);
  const jwk = matching[0]!;
  check(jwk.kty === "OKP" && jwk.crv === "Ed25519" && jwk.alg === "EdDSA", `unexpected JWK type: ${JSON.stringify(jwk)}`);
  check(jwk.use === "sig", `JWK use ${JSON.stringify(jwk.use)}, want "sig"`);

  // What a consuming service would do: a remote JWKS (fetched and cached by jose, key picked by
  // `kid`), and jwtVerify pinned to the algorithm, issuer, audience and `typ`.
  const keySet = jose.createRemoteJWKSet(new URL(url), { timeoutDuration: RPC_TIMEOUT_MS });
  const verifyOptions: jose.JWTVerifyOptions = {
    algorithms: ["EdDSA"], issuer: "tokenmint", audience: "tokenmint", typ: "at+jwt",
    requiredClaims: ["exp", "iat", "iss", "aud", "sub", "jti"],
  };
  const { payload: claims } = await jose.jwtVerify(rawToken, keySet, verifyOptions);
  check(claims.sub === "alice", `sub ${JSON.stringify(claims.sub)}`);
  check(claims.jti === minted.id, `jti ${JSON.stringify(claims.jti)} != token id ${JSON.stringify(minted.id)}`);
  check(claims["tpl"] === templateId, `tpl claim ${JSON.stringify(claims["tpl"])} != template id ${JSON.stringify(templateId)}`);
  const scope = typeof claims["scope"] === "string" ? claims["scope"].split(" ").filter(Boolean) : [];
  check(sameList(scope, ["wallet_view"]), `scope claim ${JSON.stringify(claims["scope"])}`);
  check("ips" in claims, `ips claim missing from an IP-restricted token: ${JSON.stringify(Object.keys(claims).sort())}`);
  check(BigInt(claims.exp ?? -1) === minted.expiresAt?.seconds,
    `exp ${claims.exp} != expires_at ${minted.expiresAt?.seconds}`);

  // The same keys must reject a tampered signature.
  const [head, payload, sig] = rawToken.split(".") as [string, string, string];
  const tampered = `${head}.${payload}.${sig[0] === "A" ? "B" : "A"}${sig.slice(1)}`;
  try {
    await jose.jwtVerify(tampered, keySet, verifyOptions);
  } catch (err) {
    check(err instanceof jose.errors.JWSSignatureVerificationFailed,
      `a tampered signature failed with ${err instanceof Error ? err.name : String(err)}, not as a bad signature`);
    step("offline verify (JWKS + jose)",
      `kid=${kid} typ=at+jwt tpl=${claims["tpl"]} ips=${JSON.stringify(claims["ips"])}`);
    return;
  }
  throw new CheckFailed("jose accepted a token with a tampered signature");
}

/** Status values of the Token Status List draft (§7.1). */
const STATUS_VALID = 0;
const STATUS_INVALID = 1;
/** A server reuses a rendered list for up to 1 s (status_list.render_cache_ms). */
const LIST_RENDER_WAIT_MS = 5_000;

/**
 * Reads the token's status as a relying party would (draft §8.3): the token's `status` claim
 * names a list URI and an index; the list is fetched from that URI, its signature checked
 * against the JWKS with `typ: statuslist+jwt` and `sub` equal to the URI, and the entry read by
 * @sd-jwt/jwt-status-list (which checks nothing itself). Waits for `want` up to
 * LIST_RENDER_WAIT_MS; the GetStatusList RPC must serve the same list.
 */
async function expectListStatus(tokens: TokenClient, rawToken: string, port: number, want: number,
  name: string): Promise<void> {
  const claims = jose.decodeJwt(rawToken);
  const reference = (claims["status"] as { status_list?: { idx?: unknown; uri?: unknown } } | undefined)?.status_list;
  check(reference && typeof reference.idx === "number" && typeof reference.uri === "string",
    `token has no status.status_list {idx, uri}: ${JSON.stringify(claims["status"])}`);
  const { idx, uri } = reference as { idx: number; uri: string };
  const base = `http://127.0.0.1:${port}/statuslists/`;
  check(uri.startsWith(base), `status list uri ${uri} is not under ${base}`);
  const keySet = jose.createRemoteJWKSet(new URL(`http://127.0.0.1:${port}/.well-known/jwks.json`),
    { timeoutDuration: RPC_TIMEOUT_MS });
  const listOptions: jose.JWTVerifyOptions = {
    algorithms: ["EdDSA"], typ: "statuslist+jwt", issuer: "tokenmint", subject: uri,
    requiredClaims: ["iat", "exp", "sub", "status_list"],
  };
  const deadline = Date.now() + LIST_RENDER_WAIT_MS;
  for (;;) {
    const resp = await fetch(uri, {
      headers: { accept: "application/statuslist+jwt" }, signal: AbortSignal.timeout(RPC_TIMEOUT_MS),
    });
    check(resp.status === 200, `GET ${uri}: HTTP ${resp.status}`);
    const type = resp.headers.get("content-type") ?? "";
    check(type === "application/statuslist+jwt", `GET ${uri}: content-type ${type}`);
    const listJwt = await resp.text();
    const { payload } = await jose.jwtVerify(listJwt, keySet, listOptions);
    check(!("aud" in payload) && !("scope" in payload), `a status list carries aud or scope: ${JSON.stringify(payload)}`);
    const list = getListFromStatusListJWT(listJwt);
    const status = list.getStatus(idx);
    if (status === want) {
      const rpc = await tokens.getStatusList({ listId: uri.slice(base.length) });
      const { payload: rpcPayload } = await jose.jwtVerify(rpc.statusListToken, keySet, listOptions);
      check(rpcPayload.sub === uri, `GetStatusList sub ${JSON.stringify(rpcPayload.sub)}`);
      const rpcStatus = getListFromStatusListJWT(rpc.statusListToken).getStatus(idx);
      check(rpcStatus === want, `GetStatusList entry ${idx} reads ${rpcStatus}, want ${want}`);
      step(name, `idx=${idx} of ${list.statusList.length} reads ${status} (@sd-jwt/jwt-status-list), ttl=${payload["ttl"]}`);
      return;
    }
    check(Date.now() < deadline, `${uri} entry ${idx} reads ${status}, want ${want}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function richError(tokens: TokenClient, headers: CallHeaders): Promise<void> {
  const requestId = `typescript-e2e-${randomUUID()}`;
  let failed: ConnectError;
  try {
    await tokens.createToken({ label: "typescript e2e bogus", scopes: ["bogus"] },
      { headers: { ...headers, "x-request-id": requestId } });
    throw new CheckFailed("CreateToken with scope 'bogus' should fail");
  } catch (err) {
    if (err instanceof CheckFailed) throw err;
    failed = ConnectError.from(err);
  }
  check(failed.code === Code.InvalidArgument, `bogus scope: code ${Code[failed.code]}, want InvalidArgument`);
  // Connect decodes the grpc-status-details-bin trailer (a google.rpc.Status) into `details`;
  // findDetails unpacks the ones of a given message type.
  check(failed.details.length > 0, "failed call carries no grpc-status-details-bin trailer (no details)");
  const typeNames = failed.details.map((d) => ("type" in d ? d.type : d.desc.typeName));

  const infos = failed.findDetails(ErrorInfoSchema);
  check(infos.length === 1, `want one ErrorInfo, got ${infos.length} among ${JSON.stringify(typeNames)}`);
  const info = infos[0]!;
  check(info.reason === "INVALID_SCOPE", `ErrorInfo reason ${JSON.stringify(info.reason)}, want "INVALID_SCOPE"`);
  check(info.domain === "tokenmint", `ErrorInfo domain ${JSON.stringify(info.domain)}, want "tokenmint"`);
  check(info.metadata["scope"] === "bogus", `ErrorInfo metadata ${JSON.stringify(info.metadata)}`);

  const badRequests = failed.findDetails(BadRequestSchema);
  check(badRequests.length === 1, `want one BadRequest, got ${badRequests.length}`);
  const fields = badRequests[0]!.fieldViolations.map((v) => v.field);
  check(sameList(fields, ["scopes[0]"]), `BadRequest field violations ${JSON.stringify(fields)}, want ["scopes[0]"]`);

  const requestInfos = failed.findDetails(RequestInfoSchema);
  check(requestInfos.length === 1, `want one RequestInfo, got ${requestInfos.length}`);
  check(requestInfos[0]!.requestId === requestId,
    `RequestInfo request_id ${JSON.stringify(requestInfos[0]!.requestId)}, want the x-request-id sent ${requestId}`);
  step("error details", `InvalidArgument ErrorInfo{reason=${info.reason} domain=${info.domain}} `
    + `BadRequest${JSON.stringify(fields)} RequestInfo{request_id=${requestId}}`);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { tokenmint: { type: "string", default: path.join(HERE, "..", "..", "target", "debug", "tokenmint") } },
  });
  const binary = path.resolve(values.tokenmint);
  try {
    fs.accessSync(binary, fs.constants.X_OK);
  } catch {
    console.error(`typescript e2e: FAILED: no executable tokenmint at ${binary} (build it with cargo build)`);
    return 2;
  }
  try {
    await run(binary);
  } catch (err) {
    if (err instanceof CheckFailed) {
      console.error(`typescript e2e: FAILED: ${err.message}`);
    } else if (err instanceof ConnectError) {
      console.error(`typescript e2e: FAILED: unexpected RPC error ${Code[err.code]}: ${err.rawMessage}`);
    } else if (err instanceof jose.errors.JOSEError) {
      console.error(`typescript e2e: FAILED: offline verification: ${err.code}: ${err.message}`);
    } else {
      console.error(`typescript e2e: FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
    return 1;
  }
  console.log("typescript e2e: ok");
  return 0;
}

process.exitCode = await main();
