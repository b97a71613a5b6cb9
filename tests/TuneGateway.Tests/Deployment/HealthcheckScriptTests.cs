using System.Net;
using System.Net.Sockets;
using System.Text;

namespace TuneGateway.Tests.Deployment;

/// <summary>
/// deploy/docker/tunegw-healthcheck.sh, the image's HEALTHCHECK (bash only: the runtime image has
/// no curl), against a small HTTP server on loopback.
/// </summary>
public sealed class HealthcheckScriptTests : IAsyncLifetime
{
    private static readonly string s_script = Path.Combine(DeployValidator.RepoRoot, "deploy", "docker", "tunegw-healthcheck.sh");
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private Task? _serving;

    private int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public Task InitializeAsync()
    {
        _listener.Start();
        _serving = ServeAsync(_stop.Token);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        if (_serving is not null)
        {
            try { await _serving; } catch (OperationCanceledException) { } catch (SocketException) { } catch (ObjectDisposedException) { }
        }
        _stop.Dispose();
    }

    [Fact]
    public async Task HealthyEndpointPasses() =>
        Assert.Equal(0, (await RunAsync($"http://127.0.0.1:{Port}/healthz")).ExitCode);

    [Fact]
    public async Task UrlComesFromTheEnvironmentWhenNotGiven()
    {
        var ok = await RunAsync(null, new Dictionary<string, string> { ["HEALTHCHECK_URL"] = $"http://127.0.0.1:{Port}/healthz" });
        var failing = await RunAsync(null, new Dictionary<string, string> { ["HEALTHCHECK_URL"] = $"http://127.0.0.1:{Port}/readyz" });

        Assert.Equal(0, ok.ExitCode);
        Assert.Equal(1, failing.ExitCode);
    }

    [Fact]
    public async Task Non2xxStatusFails()
    {
        var result = await RunAsync($"http://127.0.0.1:{Port}/readyz");

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("503", result.Output);
    }

    [Fact]
    public async Task ClosedPortFails()
    {
        var closed = new TcpListener(IPAddress.Loopback, 0);
        closed.Start();
        int port = ((IPEndPoint)closed.LocalEndpoint).Port;
        closed.Stop();

        var result = await RunAsync($"http://127.0.0.1:{port}/healthz");

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("cannot connect", result.Output);
    }

    [Theory]
    [InlineData("https://127.0.0.1/healthz")]
    [InlineData("127.0.0.1:8080/healthz")]
    public async Task UnsupportedUrlIsAUsageError(string url) => Assert.Equal(2, (await RunAsync(url)).ExitCode);

    private static Task<ProcessResult> RunAsync(string? url, IDictionary<string, string>? environment = null) =>
        ProcessRunner.RunAsync("bash", url is null ? [s_script] : [s_script, url], DeployValidator.RepoRoot,
            TimeSpan.FromSeconds(60), environment);

    /// <summary>Answers 200 on /healthz and 503 on anything else, one request per connection.</summary>
    private async Task ServeAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            using var client = await _listener.AcceptTcpClientAsync(ct);
            using var stream = client.GetStream();
            var request = new StringBuilder();
            var buffer = new byte[1024];
            while (!request.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                int n = await stream.ReadAsync(buffer, ct);
                if (n == 0) break;
                request.Append(Encoding.ASCII.GetString(buffer, 0, n));
            }
            string[] requestLine = request.ToString().Split("\r\n")[0].Split(' ');
            bool healthy = requestLine.Length > 1 && requestLine[1] == "/healthz";
            string body = healthy ? "Healthy" : "Unhealthy";
            string response = $"HTTP/1.1 {(healthy ? "200 OK" : "503 Service Unavailable")}\r\n" +
                $"Content-Type: text/plain\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n{body}";
            await stream.WriteAsync(Encoding.ASCII.GetBytes(response), ct);
        }
    }
}
