#!/usr/bin/env bash
# Generates the Python stubs of tokenmint's public contract (proto/tokenmint/v1/*.proto) into gen/
# with grpcio-tools: messages (*_pb2.py), type stubs (*_pb2.pyi) and service stubs (*_pb2_grpc.py).
# gen/ is rebuilt from scratch every time and is not committed.
# Uses $PYTHON (default python3), which must have grpcio-tools installed (see requirements.txt).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
proto_root=../../proto

protos=("$proto_root"/tokenmint/v1/*.proto)
[ -e "${protos[0]}" ] || { echo "no .proto files under $proto_root/tokenmint/v1" >&2; exit 1; }

rm -rf gen
mkdir -p gen
# protoc names each file relative to the -I root, so the generated modules import each other as
# tokenmint.v1.xxx_pb2; google/protobuf/*.proto come from grpc_tools' bundled includes.
"$PYTHON" -m grpc_tools.protoc -I "$proto_root" \
  --python_out=gen --grpc_python_out=gen --pyi_out=gen \
  "${protos[@]}"
# Regular packages rather than namespace packages, so `tokenmint.v1` resolves to gen/ only.
touch gen/tokenmint/__init__.py gen/tokenmint/v1/__init__.py
echo "generated $(find gen/tokenmint/v1 -name '*_pb2*.py' | wc -l) modules from ${#protos[@]} protos into clients/python/gen/"
