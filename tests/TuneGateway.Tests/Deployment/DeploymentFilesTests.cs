namespace TuneGateway.Tests.Deployment;

/// <summary>
/// The Dockerfile, deploy/docker-compose*.yml and k8s/ pass deploy/validate (Kubernetes OpenAPI
/// schemas via kubernetes-models, the compose-spec schema, a Dockerfile linter and the project's
/// own invariants), and the same validator rejects each of a set of deliberately broken copies.
/// </summary>
public class DeploymentFilesTests
{
    [Fact]
    public async Task ShippedDeploymentFilesAreValid()
    {
        var result = await DeployValidator.RunAsync();

        Assert.True(result.ExitCode == 0, "deploy/validate rejected the deployment files:\n" + result.Output);
        Assert.Contains("deployment files valid", result.Output);
        Assert.Matches(@"Kubernetes: \d+ objects in \d+ files checked against the Kubernetes 1\.33\.0 OpenAPI schemas", result.Output);
        Assert.Contains("Compose: 2 file(s) checked", result.Output);
    }

    [Theory]
    // Kubernetes: schema (unknown field, wrong type, beta API), YAML syntax.
    [InlineData("k8s/gateway.yaml", "      maxSurge: 1\n", "      maxSurge: 1\n      maxSurg: 2\n", null,
        "spec.strategy.rollingUpdate.maxSurg: unknown field")]
    [InlineData("k8s/worker.yaml", "  replicas: 2\n", "  replicas: two\n", null, "spec.replicas: must be integer")]
    [InlineData("k8s/gateway.yaml", "apiVersion: autoscaling/v2\n", "apiVersion: autoscaling/v2beta2\n", null, "is not a GA API")]
    [InlineData("k8s/configmap.yaml", "redis-connection: \"tunegw-redis:6379\"", "redis-connection: \"tunegw-redis:6379", null, "YAML:")]
    // Kubernetes: what the API server or the cluster would reject later.
    [InlineData("k8s/gateway.yaml",
        "  selector:\n    matchLabels:\n      app.kubernetes.io/name: tunegw\n      app.kubernetes.io/component: gateway\n  template:",
        "  selector:\n    matchLabels:\n      app.kubernetes.io/name: tunegw\n      app.kubernetes.io/component: gatewy\n  template:",
        null, "spec.selector: does not match spec.template.metadata.labels")]
    [InlineData("k8s/worker.yaml", "http://$(POD_IP):8080", "http://$(POD_ADDRESS):8080", null,
        "$(POD_ADDRESS) refers to an environment variable the container does not define")]
    [InlineData("k8s/gateway.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", null,
        "(Pod Security 'restricted')")]
    [InlineData("k8s/worker.yaml", "claimName: tunegw-artifacts", "claimName: tunegw-artefacts", null,
        "PersistentVolumeClaim tunegw-artefacts is not defined")]
    [InlineData("k8s/kustomization.yaml", "  - worker.yaml\n", "", null, "worker.yaml is not listed in resources")]
    // Kubernetes: TuneGateway's requirements.
    [InlineData("k8s/worker.yaml", "              nvidia.com/gpu: 1\n", "", null, "the worker must request nvidia.com/gpu")]
    [InlineData("k8s/worker.yaml", "path: /readyz", "path: /healthz", null, "readiness probe must GET /readyz")]
    [InlineData("k8s/controller.yaml", "type: Recreate", "type: RollingUpdate", null, "use strategy Recreate")]
    [InlineData("k8s/redis.yaml", "appendonly yes", "appendonly no", null, "AOF persistence")]
    [InlineData("k8s/storage.yaml", "    - ReadWriteMany\n  volumeMode: Filesystem\n  resources:\n    requests:\n      storage: 50Gi",
        "    - ReadWriteOnce\n  volumeMode: Filesystem\n  resources:\n    requests:\n      storage: 50Gi", "k8s/worker.yaml",
        "must be a ReadWriteMany PersistentVolumeClaim")]
    // Compose.
    [InlineData("deploy/docker-compose.yml", "    healthcheck:\n", "    helthcheck:\n", null,
        "compose schema: must NOT have additional properties: 'helthcheck'")]
    [InlineData("deploy/docker-compose.yml", "${TUNEGW_PORT:-8080}", "${TUNEGW_PORT}", null, "${TUNEGW_PORT} has no default")]
    [InlineData("deploy/docker-compose.yml", "      - source: redis-config\n", "      - source: redis-conf\n", null,
        "config redis-conf is not declared under top-level configs")]
    [InlineData("deploy/config/redis.conf", "appendonly yes", "appendonly no", "deploy/docker-compose.yml", "AOF persistence")]
    [InlineData("deploy/docker-compose.gpu.yml", "  worker-2:\n", "  worker-3:\n", null, "which the base file does not define")]
    // Dockerfile.
    [InlineData("Dockerfile", "USER 10001:10001", "USER tunegw", null, "use a numeric uid")]
    [InlineData("Dockerfile", "USER 10001:10001\n", "", null, "must switch to a non-root USER")]
    [InlineData("Dockerfile", "ENTRYPOINT [\"tunegw\"]", "ENTRYPOINT [\"dotnet\", \"/app/tunegw.dll\"]", null,
        "ENTRYPOINT must be the exec form starting with tunegw")]
    [InlineData("Dockerfile", "HEALTHCHECK --interval", "# HEALTHCHECK --interval", null, "needs a HEALTHCHECK")]
    [InlineData("Dockerfile", "ARG TORCH_BACKEND=cpu", "ARG TORCH_BACKEND=cuda", null, "needs a global `ARG TORCH_BACKEND=cpu`")]
    [InlineData("Dockerfile", "FROM runtime-${TORCH_BACKEND} AS final", "FROM runtime-cpu AS final", null,
        "with TORCH_BACKEND=cuda the image must be based on an nvidia/cuda")]
    [InlineData("Dockerfile", "COPY src/TuneGateway.Storage/TuneGateway.Storage.csproj src/TuneGateway.Storage/\n", "", null,
        "src/TuneGateway.Storage/TuneGateway.Storage.csproj is not copied before `dotnet restore`")]
    [InlineData("Dockerfile", "EXPOSE 8080", "EXPOS 8080", null, "Unknown instruction: EXPOS")]
    public async Task BrokenCopyIsRejected(string file, string find, string replace, string? reportedIn, string expected)
    {
        string root = CopyDeploymentFiles();
        try
        {
            string target = Path.Combine(root, file);
            string text = await File.ReadAllTextAsync(target);
            Assert.Contains(find, text);
            await File.WriteAllTextAsync(target, text.Replace(find, replace, StringComparison.Ordinal));

            var result = await DeployValidator.RunAsync(root, DeployValidator.RepoRoot);

            Assert.True(result.ExitCode == 1, $"expected the validator to reject the edit of {file}:\n{result.Output}");
            string line = result.Output.Split('\n').FirstOrDefault(l => l.Contains(expected, StringComparison.Ordinal))
                ?? throw new Xunit.Sdk.XunitException($"no error mentions \"{expected}\":\n{result.Output}");
            Assert.StartsWith($"ERROR {reportedIn ?? file}", line);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>A scratch copy of the Dockerfile, k8s/ and deploy/ (without the validator itself).</summary>
    private static string CopyDeploymentFiles()
    {
        string repo = DeployValidator.RepoRoot;
        string root = Directory.CreateTempSubdirectory("tunegw-deploy-").FullName;
        File.Copy(Path.Combine(repo, "Dockerfile"), Path.Combine(root, "Dockerfile"));
        CopyTree(Path.Combine(repo, "k8s"), Path.Combine(root, "k8s"));
        CopyTree(Path.Combine(repo, "deploy"), Path.Combine(root, "deploy"), skip: Path.Combine(repo, "deploy", "validate"));
        return root;
    }

    private static void CopyTree(string from, string to, string? skip = null)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (string dir in Directory.GetDirectories(from))
        {
            if (dir == skip) continue;
            CopyTree(dir, Path.Combine(to, Path.GetFileName(dir)), skip);
        }
    }
}
