#!/usr/bin/env bash
# Generates the TypeScript client of tokenmint's public contract (proto/tokenmint/v1/*.proto) into
# gen/ with `buf generate` (buf.gen.yaml): protobuf-es messages and the service descriptors that
# Connect's createClient takes, plus google.rpc's error details and grpc.health.v1 from npm
# packages. Offline: buf, the plugin and both proto packages come from node_modules (`npm ci`).
# gen/ is rebuilt from scratch every time and is not committed.
set -euo pipefail
cd "$(dirname "$0")"
for tool in buf protoc-gen-es; do
  [ -x "node_modules/.bin/$tool" ] || { echo "node_modules/.bin/$tool is missing: run npm ci in clients/typescript" >&2; exit 1; }
done
protos=(../../proto/tokenmint/v1/*.proto)
[ -e "${protos[0]}" ] || { echo "no .proto files under ../../proto/tokenmint/v1" >&2; exit 1; }

rm -rf gen
node_modules/.bin/buf generate
echo "generated $(find gen -name '*_pb.ts' | wc -l) modules (${#protos[@]} tokenmint protos, google.rpc error details, grpc.health.v1) into clients/typescript/gen/"
