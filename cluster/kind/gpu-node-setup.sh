#!/usr/bin/env bash
# Runs INSIDE a kind GPU node (scripts/kind-up --gpu pipes it to `docker exec -i <node> bash -s`),
# the steps of NVIDIA's nvkind for each node that was given GPUs:
#   1. install the NVIDIA Container Toolkit (version NVIDIA_CONTAINER_TOOLKIT_VERSION, passed in);
#   2. add the `nvidia` runtime to containerd and make it the default, so every container on
#      this node (the device plugin, the Ray GPU workers) gets the GPUs the device plugin
#      allocates to it, whatever its RuntimeClass;
#   3. hide the host's device nodes from the driver's re-creation (ModifyDeviceFiles: 0), as
#      nvkind does for toolkits that do not do it themselves;
#   4. check that the node sees its GPUs.
# Idempotent: steps already done are skipped, so kind-up can run again on the same cluster.
set -euo pipefail

: "${NVIDIA_CONTAINER_TOOLKIT_VERSION:?pass NVIDIA_CONTAINER_TOOLKIT_VERSION (cluster/versions.env) with docker exec -e}"
KEYRING=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
export DEBIAN_FRONTEND=noninteractive

if ! command -v nvidia-ctk >/dev/null 2>&1; then
  echo "installing the NVIDIA Container Toolkit ${NVIDIA_CONTAINER_TOOLKIT_VERSION}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends gpg >/dev/null
  curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | gpg --batch --yes --dearmor -o "$KEYRING"
  curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \
    | sed "s#deb https://#deb [signed-by=${KEYRING}] https://#g" >/etc/apt/sources.list.d/nvidia-container-toolkit.list
  apt-get update -qq
  version="${NVIDIA_CONTAINER_TOOLKIT_VERSION}-1"
  apt-get install -y -qq --no-install-recommends \
    "nvidia-container-toolkit=${version}" "nvidia-container-toolkit-base=${version}" \
    "libnvidia-container-tools=${version}" "libnvidia-container1=${version}" >/dev/null
fi

if ! containerd config dump 2>/dev/null | grep -F 'default_runtime_name = "nvidia"' >/dev/null; then
  echo "making nvidia containerd's default runtime"
  nvidia-ctk runtime configure --runtime=containerd --config-source=file --set-as-default
  systemctl restart containerd
fi

if grep -q '^ModifyDeviceFiles: 1$' /proc/driver/nvidia/params 2>/dev/null; then
  echo "masking /proc/driver/nvidia/params (ModifyDeviceFiles: 0)"
  umount -R /proc/driver/nvidia
  cp /proc/driver/nvidia/params /root/gpu-params
  sed -i 's/^ModifyDeviceFiles: 1$/ModifyDeviceFiles: 0/' /root/gpu-params
  mount --bind /root/gpu-params /proc/driver/nvidia/params
fi

nvidia-smi -L
