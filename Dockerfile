# syntax=docker/dockerfile:1
#
# One image for every tunegw role: `serve` (the default command), `gateway`, `worker` and
# `controller`. Pick the role with the command, e.g. `docker run tunegw:cpu gateway --urls http://+:8080`.
#
#   CPU (default):  docker build -t tunegw:cpu .
#   CUDA:           docker build --build-arg TORCH_BACKEND=cuda -t tunegw:cuda .
#
# Needs BuildKit (the default builder since Docker 23): the final stage is chosen with
# `FROM runtime-${TORCH_BACKEND}`, and BuildKit builds only the stages that stage needs, so a CPU
# build never pulls the CUDA base image. libtorch ships for linux-x64 only: build and run the
# image as linux/amd64 (on an arm64 machine add --platform linux/amd64).
#
# The CPU image is aspnet:10.0 (Debian 13, ~220 MB) plus the app (~430 MB, almost all of it
# libtorch). The CUDA image adds the NVIDIA runtime base and libtorch-cuda and is several GB.
# See docs/DEPLOYMENT.md.

# Tensor backend: cpu (NuGet TorchSharp-cpu) or cuda (TorchSharp-cuda-linux, libtorch 2.10 built
# for CUDA 12.8).
ARG TORCH_BACKEND=cpu
ARG DOTNET_VERSION=10.0
# Base of the CUDA image. The CUDA 12.x runtime of the host driver must be >= the one libtorch was
# built for (12.8).
ARG CUDA_BASE_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------
# build: restore (cached layer keyed on the project files only), then publish to /app.
FROM mcr.microsoft.com/dotnet/sdk:${DOTNET_VERSION} AS build
ARG TORCH_BACKEND
WORKDIR /src

COPY Directory.Build.props Directory.Build.targets Directory.Packages.props ./
COPY build/ build/
COPY src/TuneGateway.Cli/TuneGateway.Cli.csproj src/TuneGateway.Cli/
COPY src/TuneGateway.Engine/TuneGateway.Engine.csproj src/TuneGateway.Engine/
COPY src/TuneGateway.Training/TuneGateway.Training.csproj src/TuneGateway.Training/
COPY src/TuneGateway.Storage/TuneGateway.Storage.csproj src/TuneGateway.Storage/
COPY src/TuneGateway.Controller/TuneGateway.Controller.csproj src/TuneGateway.Controller/
COPY src/TuneGateway.Gateway/TuneGateway.Gateway.csproj src/TuneGateway.Gateway/
COPY src/TuneGateway.Worker/TuneGateway.Worker.csproj src/TuneGateway.Worker/
RUN --mount=type=cache,id=tunegw-nuget,target=/root/.nuget/packages \
    dotnet restore src/TuneGateway.Cli/TuneGateway.Cli.csproj \
        -r linux-x64 -p:TorchBackend=${TORCH_BACKEND}

COPY src/ src/
# The bundled default model (`tunegw serve` with no --model) comes from the test fixtures.
COPY tests/fixtures/llama-tiny/ tests/fixtures/llama-tiny/
# Framework-dependent publish: the ASP.NET Core runtime comes from the runtime image. Debug
# symbols, satellite resources and the libtorch parts TorchSharp never loads (the Python
# binding and test libraries, ~35 MB) are left out.
RUN --mount=type=cache,id=tunegw-nuget,target=/root/.nuget/packages \
    dotnet publish src/TuneGateway.Cli/TuneGateway.Cli.csproj \
        -c Release -r linux-x64 --no-restore -o /app \
        -p:TorchBackend=${TORCH_BACKEND} \
        -p:DebugType=none -p:SatelliteResourceLanguages=en \
    && rm -f /app/libtorch_python.so /app/libtorchbind_test.so /app/libjitbackend_test.so \
        /app/libaoti_custom_ops.so /app/libbackend_with_compiler.so /app/libnnapi_backend.so \
    && test -x /app/tunegw && test -f /app/models/llama-tiny/base/config.json

# ---------------------------------------------------------------------------------------------
# runtime-cpu: the official ASP.NET Core runtime image (Debian 13).
FROM mcr.microsoft.com/dotnet/aspnet:${DOTNET_VERSION} AS runtime-cpu

# ---------------------------------------------------------------------------------------------
# runtime-cuda: the NVIDIA CUDA runtime (Ubuntu 24.04) with the same ASP.NET Core runtime copied
# from the official image, plus the few libraries it needs (no ICU: the app runs with
# InvariantGlobalization).
FROM mcr.microsoft.com/dotnet/aspnet:${DOTNET_VERSION} AS dotnet-runtime

FROM ${CUDA_BASE_IMAGE} AS runtime-cuda
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3t64 zlib1g tzdata \
    && rm -rf /var/lib/apt/lists/*
COPY --from=dotnet-runtime /usr/share/dotnet /usr/share/dotnet
# (The NVIDIA base already sets NVIDIA_VISIBLE_DEVICES and NVIDIA_DRIVER_CAPABILITIES.)
ENV DOTNET_ROOT=/usr/share/dotnet \
    DOTNET_RUNNING_IN_CONTAINER=true
RUN ln -s /usr/share/dotnet/dotnet /usr/bin/dotnet

# ---------------------------------------------------------------------------------------------
# final: the runtime for TORCH_BACKEND, the app, a non-root user.
FROM runtime-${TORCH_BACKEND} AS final
ARG TORCH_BACKEND

# uid/gid 10001, numeric in USER so that Kubernetes' runAsNonRoot can verify it; the manifests
# use the same ids.
RUN groupadd --system --gid 10001 tunegw \
    && useradd --system --uid 10001 --gid tunegw --home-dir /home/tunegw --create-home \
        --shell /usr/sbin/nologin tunegw \
    && mkdir -p /etc/tunegw/keys /var/lib/tunegw/artifacts /var/lib/tunegw/data /models \
    && chown -R tunegw:tunegw /var/lib/tunegw

# The app stays owned by root: the tunegw user can read it, not change it.
COPY --from=build /app /app
COPY --chmod=0755 deploy/docker/tunegw-healthcheck.sh /usr/local/bin/tunegw-healthcheck
RUN ln -s /app/tunegw /usr/local/bin/tunegw

LABEL org.opencontainers.image.title="tunegw" \
      org.opencontainers.image.description="TuneGateway: Hugging Face LLMs with hot-swappable LoRA adapters behind an OpenAI-compatible gateway" \
      io.tunegw.torch-backend="${TORCH_BACKEND}"

ENV DOTNET_ROOT=/usr/share/dotnet \
    ASPNETCORE_HTTP_PORTS=8080 \
    HEALTHCHECK_URL=http://127.0.0.1:8080/healthz

# A writable working directory: `serve` keeps its embedded store under --data-dir.
WORKDIR /var/lib/tunegw
USER 10001:10001
EXPOSE 8080

# Docker and compose use this; Kubernetes uses the probes in k8s/ instead. The controller has no
# HTTP endpoint: compose disables the check for it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["tunegw-healthcheck"]

ENTRYPOINT ["tunegw"]
CMD ["serve", "--urls", "http://+:8080", "--data-dir", "/var/lib/tunegw/data"]
