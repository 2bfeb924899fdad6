// Not run in CI: calling tokenmint from TypeScript (Node) with Connect's gRPC transport.
//
//   cd examples/typescript && buf generate
//   npm i @connectrpc/connect @connectrpc/connect-node @bufbuild/protobuf
//   TOKEN=$(tokenmint bootstrap --user alice --scopes user_manage,token_introspect,wallet_view) npx tsx client.ts
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb";
import { TokenService } from "./gen/tokenmint/v1/token_service_pb";

const transport = createGrpcTransport({ baseUrl: "http://localhost:50051" });
const client = createClient(TokenService, transport);
const headers = { authorization: `Bearer ${process.env.TOKEN}` };

const created = await client.createToken({ label: "from typescript", scopes: ["wallet_view"] }, { headers });
console.log("minted", created.token?.id, "checksum", created.token?.checksum);

const verified = await client.verifyToken({ token: created.rawToken }, { headers });
console.log("active:", verified.active, "reason:", verified.reason);

try {
  await client.createToken({ label: "x", scopes: ["bogus"] }, { headers });
} catch (err) {
  const error = ConnectError.from(err);
  if (error.code === Code.InvalidArgument) {
    for (const info of error.findDetails(ErrorInfoSchema)) {
      console.log("refused:", info.reason, info.metadata);
    }
  }
}
