#!/usr/bin/env bash
# Runs on the GPU host (see bench/gpu/README.md): unpacks .devrun/ and runs tunegw on CUDA with
# the libtorch of the host's PyTorch. Usage: bench/gpu/run.sh <tunegw arguments...>
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p /tmp/tunegw/dotnet /tmp/tunegw/app-root
[ -x /tmp/tunegw/dotnet/dotnet ] || tar -C /tmp/tunegw/dotnet -xJf .devrun/dotnet.tar.xz
[ -f /tmp/tunegw/app-root/app/tunegw.dll ] || tar -C /tmp/tunegw/app-root -xJf .devrun/app.tar.xz
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}"
export DOTNET_ROOT=/tmp/tunegw/dotnet DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1
exec /tmp/tunegw/dotnet/dotnet /tmp/tunegw/app-root/app/tunegw.dll "$@"
