using System.Text.RegularExpressions;
using TuneGateway.Gateway.Auth;
using TuneGateway.Tests.Storage;

namespace TuneGateway.Tests.Deployment;

/// <summary>
/// The example key files the deployment files mount parse as the gateway reads them, and hold a
/// worker-role key whose secret is the one the workers are given (else no worker could register).
/// </summary>
public class ApiKeyExampleTests
{
    private static string Repo(string path) => Path.Combine(DeployValidator.RepoRoot, path);

    [Fact]
    public void TheComposeKeyFileParsesAndItsWorkerKeyIsTheOneWorkersPresent()
    {
        var store = new ApiKeyStore(ApiKeyStore.ReadFile(Repo("deploy/config/api-keys.example.json")));
        string compose = File.ReadAllText(Repo("deploy/docker-compose.yml"));
        var keys = Regex.Matches(compose, @"TUNEGW_GATEWAY_KEY: \$\{TUNEGW_WORKER_REGISTRATION_KEY:-([^}]+)\}").Select(m => m.Groups[1].Value).ToArray();
        Assert.Equal(2, keys.Length);
        Assert.All(keys, key => Assert.Equal([Roles.Worker], store.Find(key)?.Roles.ToArray() ?? []));
    }

    [Fact]
    public void TheKubernetesExampleSecretParsesAndItsWorkerKeyIsTheOneWorkersPresent()
    {
        string secret = File.ReadAllText(Repo("k8s/secret.example.yaml"));
        string json = Regex.Match(secret, @"api-keys\.json: \|\n((?:    .*\n)+)").Groups[1].Value;
        using var directory = new TempDirectory();
        string file = Path.Combine(directory.Path, "api-keys.json");
        File.WriteAllText(file, json);
        var store = new ApiKeyStore(ApiKeyStore.ReadFile(file));
        string workerKey = Regex.Match(secret, @"name: tunegw-worker-registration[\s\S]*?stringData:\s*\n\s*key: (\S+)").Groups[1].Value;
        Assert.Equal([Roles.Worker], store.Find(workerKey)?.Roles.ToArray() ?? []);
        Assert.Contains("name: tunegw-worker-registration", File.ReadAllText(Repo("k8s/worker.yaml")));
    }
}
