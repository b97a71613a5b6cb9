#!/usr/bin/env bash
# Packs what the GPU host needs to run tunegw on CUDA: a framework-dependent publish of tunegw
# (without the CPU libtorch that TorchSharp-cpu ships: the host's PyTorch provides CUDA libtorch)
# and the .NET runtime, into .devrun/ (ignored by git, carried to the device).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.devrun
rm -rf "$out" && mkdir -p "$out"
dotnet publish src/TuneGateway.Cli -c Release -o "$out/app" --nologo -v q
# Keep libLibTorchSharp.so (patched for older libstdc++ where needed); drop the CPU libtorch.
find "$out/app" -name '*.so*' ! -name 'libLibTorchSharp.so' -delete
tar -C "$out" -cJf "$out/app.tar.xz" app && rm -rf "$out/app"
dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
tar -C "$dotnet_root" -cJf "$out/dotnet.tar.xz" dotnet host shared/Microsoft.NETCore.App shared/Microsoft.AspNetCore.App
du -sh "$out"/*
