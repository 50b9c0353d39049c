# shellcheck shell=bash
# Shared by the cluster scripts (sourced, not run): the versions pinned in cluster/versions.env,
# prerequisite checks that stop with a clear message, and the steps that kind-up and gpu-check
# share. Every function takes the kube context explicitly: nothing here acts on whatever
# context happens to be current.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=cluster/versions.env
source "$ROOT/cluster/versions.env"

# The Helm release of the KubeRay operator (skaffold.yaml uses the same name and namespace).
KUBERAY_RELEASE=kuberay-operator
# nvidia-container-runtime's configuration on the host (read by the GPU checks).
NVIDIA_RUNTIME_CONFIG="${NVIDIA_RUNTIME_CONFIG:-/etc/nvidia-container-runtime/config.toml}"

# Bold and red only on a terminal.
if [ -t 2 ]; then BOLD=$'\033[1m' RED=$'\033[1;31m' PLAIN=$'\033[0m'; else BOLD="" RED="" PLAIN=""; fi
log() { printf '%s[mnist-serve]%s %s\n' "$BOLD" "$PLAIN" "$*" >&2; }
die() {
  printf '%s[mnist-serve] error:%s %s\n' "$RED" "$PLAIN" "$*" >&2
  exit 1
}

# print_usage SCRIPT: the script's leading comment block, as its --help.
print_usage() { awk 'NR > 1 && /^#/ && !/shellcheck/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$1"; }

# install_hint TOOL: where to get a prerequisite, with the version pinned for it.
install_hint() {
  case "$1" in
    docker) echo "Docker Engine: https://docs.docker.com/engine/install/" ;;
    kind) echo "kind ${KIND_VERSION}: https://kind.sigs.k8s.io/docs/user/quick-start/#installation" ;;
    helm) echo "Helm ${HELM_VERSION}: https://helm.sh/docs/intro/install/" ;;
    kubectl) echo "kubectl ${KUBECTL_VERSION}: https://kubernetes.io/docs/tasks/tools/" ;;
    skaffold) echo "Skaffold ${SKAFFOLD_VERSION}: https://skaffold.dev/docs/install/" ;;
    nvidia-ctk) echo "NVIDIA Container Toolkit: https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html" ;;
    nvidia-smi) echo "an NVIDIA driver for your GPU: https://www.nvidia.com/en-us/drivers/" ;;
    *) echo "install $1" ;;
  esac
}

# require_tools TOOL...: stop when any is missing, naming each one and where to get it.
require_tools() {
  local tool
  local missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ "${#missing[@]}" -eq 0 ]; then return 0; fi
  {
    printf '%s[mnist-serve] error:%s missing prerequisite(s): %s\n' "$RED" "$PLAIN" "${missing[*]}"
    for tool in "${missing[@]}"; do printf '  %-11s %s\n' "$tool" "$(install_hint "$tool")"; done
    printf 'The versions this project pins are in cluster/versions.env.\n'
  } >&2
  exit 1
}

# warn_version TOOL FOUND PINNED: a warning (not an error) when FOUND does not mention PINNED.
warn_version() {
  case "$2" in
    *"$3"*) ;;
    *) log "warning: $1 $3 is pinned in cluster/versions.env; found: ${2:-unknown}" ;;
  esac
}

# check_versions TOOL...: compare installed tools with the pinned versions.
check_versions() {
  local tool
  for tool in "$@"; do
    case "$tool" in
      kind) warn_version kind "$(kind version 2>/dev/null || true)" "$KIND_VERSION" ;;
      helm) warn_version helm "$(helm version --short 2>/dev/null || true)" "$HELM_VERSION" ;;
      kubectl) warn_version kubectl "$(kubectl version --client 2>/dev/null || true)" "$KUBECTL_VERSION" ;;
      skaffold) warn_version skaffold "$(skaffold version 2>/dev/null || true)" "$SKAFFOLD_VERSION" ;;
    esac
  done
}

# require_docker_daemon: the docker CLI alone is not enough.
require_docker_daemon() {
  docker info >/dev/null 2>&1 \
    || die "docker is installed but its daemon does not answer ('docker info' failed): start Docker, or run as a user allowed to use it"
}

# require_gpu_host: a working NVIDIA driver, and Docker set up as nvkind needs it.
require_gpu_host() {
  nvidia-smi -L >/dev/null 2>&1 \
    || die "'nvidia-smi -L' failed: this machine has no working NVIDIA driver (for a cluster without GPUs: bash scripts/kind-up)"
  local runtime
  runtime="$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null || true)"
  if [ "$runtime" != nvidia ] \
    || ! grep -Eq '^[[:space:]]*accept-nvidia-visible-devices-as-volume-mounts[[:space:]]*=[[:space:]]*true' "$NVIDIA_RUNTIME_CONFIG" 2>/dev/null; then
    die "Docker is not set up to hand GPUs to kind nodes (default runtime: ${runtime:-unknown}; ${NVIDIA_RUNTIME_CONFIG} must accept GPU requests as volume mounts). Run once, as root:
    nvidia-ctk runtime configure --runtime=docker --set-as-default --cdi.enabled
    nvidia-ctk config --set accept-nvidia-visible-devices-as-volume-mounts=true --in-place
    systemctl restart docker
then check: docker run --rm -v /dev/null:/var/run/nvidia-container-devices/all ubuntu:24.04 nvidia-smi -L"
  fi
}

# config_name FILE: the cluster name a kind configuration declares.
config_name() { awk '$1 == "name:" {print $2; exit}' "$1"; }

# kind_cluster_exists NAME
kind_cluster_exists() { kind get clusters 2>/dev/null | grep -Fx "$1" >/dev/null; }

# chart_repository / chart_version: the chart's image.repository and appVersion.
chart_repository() { awk '/^image:/ {found = 1} found && $1 == "repository:" {print $2; exit}' "$ROOT/charts/mnist-serve/values.yaml"; }
chart_version() { awk '$1 == "appVersion:" {gsub(/"/, "", $2); print $2; exit}' "$ROOT/charts/mnist-serve/Chart.yaml"; }

# chart_image: the chart's default image reference, <image.repository>:<appVersion>.
chart_image() { echo "$(chart_repository):$(chart_version)"; }

# The last image scripts/image (or kind-up) built: read by gpu-check and the e2e suite.
LAST_IMAGE_FILE="${MNIST_SERVE_IMAGE_FILE:-$ROOT/.image}"

# last_image: the last built image's reference, else the chart's default.
last_image() {
  if [ -s "$LAST_IMAGE_FILE" ]; then cat "$LAST_IMAGE_FILE"; else chart_image; fi
}

# build_image VARIANT: build docker/Dockerfile (cpu or gpu) and tag it <repository>:<appVersion>-<id>
# (repository: $IMAGE_REPOSITORY, else the chart's image.repository),
# the first 12 hex digits of the image ID: a rebuild with other content gets another tag, so
# `helm upgrade --set image.tag=...` rolls it out (IfNotPresent never re-pulls a tag it has).
# Prints the reference; logs the image's size.
build_image() {
  local variant="$1" repository staging id ref size
  repository="${IMAGE_REPOSITORY:-$(chart_repository)}"
  staging="${repository}:build-${variant}"
  log "building $staging (VARIANT=$variant) from docker/Dockerfile"
  docker build -f "$ROOT/docker/Dockerfile" --build-arg "VARIANT=$variant" -t "$staging" "$ROOT" >&2
  id="$(docker image inspect --format '{{.Id}}' "$staging")"
  id="${id#sha256:}"
  ref="${repository}:$(chart_version)-${id:0:12}"
  docker tag "$staging" "$ref"
  size="$(docker image inspect --format '{{.Size}}' "$ref")"
  log "built $ref ($((size / 1000000)) MB uncompressed)"
  echo "$ref" >"$LAST_IMAGE_FILE"
  echo "$ref"
}

# load_image CLUSTER REF: load an image into the worker nodes of a kind cluster.
load_image() {
  local workers
  workers="$(kind get nodes --name "$1" | grep -v -- '-control-plane$' | paste -sd, - || true)"
  log "loading $2 into ${workers:-every node of $1}"
  if [ -n "$workers" ]; then
    kind load docker-image "$2" --name "$1" --nodes "$workers"
  else
    kind load docker-image "$2" --name "$1"
  fi
}

# install_kuberay CONTEXT: the KubeRay operator and its CRDs (idempotent: helm upgrade --install).
install_kuberay() {
  log "installing the KubeRay operator ${KUBERAY_VERSION} (Helm release ${KUBERAY_RELEASE} in namespace ${KUBERAY_NAMESPACE})"
  helm upgrade --install "$KUBERAY_RELEASE" kuberay-operator \
    --repo "$KUBERAY_HELM_REPO" --version "$KUBERAY_VERSION" \
    --namespace "$KUBERAY_NAMESPACE" --create-namespace \
    --kube-context "$1" --wait --timeout 5m
}

# gpu_allocatable CONTEXT: nvidia.com/gpu allocatable on all nodes together.
gpu_allocatable() {
  kubectl --context "$1" get nodes \
    -o 'jsonpath={range .items[*]}{.status.allocatable.nvidia\.com/gpu}{"\n"}{end}' \
    | awk '{total += $1} END {print total + 0}'
}

# show_gpu_nodes CONTEXT: nodes with their GPU label and allocatable GPUs.
show_gpu_nodes() {
  kubectl --context "$1" get nodes \
    -o 'custom-columns=NODE:.metadata.name,GPU-POOL:.metadata.labels.nvidia\.com/gpu\.present,ALLOCATABLE-GPUS:.status.allocatable.nvidia\.com/gpu' >&2
}

# wait_gpu_allocatable CONTEXT SECONDS: until some node has allocatable nvidia.com/gpu.
wait_gpu_allocatable() {
  local deadline=$((SECONDS + $2)) total
  while :; do
    total="$(gpu_allocatable "$1")"
    if [ "$total" -gt 0 ]; then
      log "nvidia.com/gpu is allocatable: $total in all"
      show_gpu_nodes "$1"
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      show_gpu_nodes "$1"
      die "no node has allocatable nvidia.com/gpu after $2 s: see the device plugin's pods and logs (kubectl --context $1 -n ${NVIDIA_DEVICE_PLUGIN_NAMESPACE} get pods; kubectl --context $1 -n ${NVIDIA_DEVICE_PLUGIN_NAMESPACE} logs -l app.kubernetes.io/name=nvidia-device-plugin)"
    fi
    sleep 5
  done
}
