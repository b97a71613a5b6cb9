using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Reflection;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Serving;
using TuneGateway.Gateway;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Tests.Engine;

namespace TuneGateway.Tests.Server;

/// <summary>Helpers to run servers on loopback and talk to them over real HTTP.</summary>
internal static class ServerTestHost
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>The bundled tiny model, its adapters loadable by name.</summary>
    public static EngineOptions TinyEngine(int maxNumSeqs = 8, int maxQueue = 256, string? loraDirectory = null) => new()
    {
        ModelDirectory = Fixtures.LlamaTiny,
        Device = "cpu",
        MaxNumSeqs = maxNumSeqs,
        MaxBatchTokens = 512,
        MaxQueue = maxQueue,
        Adapters = new AdapterManagerOptions { LoraDirectory = loraDirectory ?? Fixtures.LlamaTinyAdapters },
    };

    public static HostSettings Settings(IReadOnlyList<TuneGateway.Gateway.Auth.ApiKeyEntry>? keys = null) => new()
    {
        Urls = ["http://127.0.0.1:0"],
        ApiKeys = keys ?? [],
        ConfigureLogging = logging => logging.SetMinimumLevel(LogLevel.Warning),
    };

    public static string BaseUrl(WebApplication app) => app.Urls.First(u => u.StartsWith("http://", StringComparison.Ordinal)).TrimEnd('/');

    /// <summary>Polls until <paramref name="condition"/> holds; fails after <see cref="Patience"/>.</summary>
    public static async Task WaitUntilAsync(Func<Task<bool>> condition, string what, TimeSpan? patience = null)
    {
        var deadline = Stopwatch.StartNew();
        while (!await condition())
        {
            if (deadline.Elapsed > (patience ?? Patience)) throw new TimeoutException($"Timed out waiting for {what}.");
            await Task.Delay(50);
        }
    }

    /// <summary>Starts <paramref name="app"/> and waits until it serves; returns its base URL.</summary>
    public static async Task<string> StartReadyAsync(WebApplication app, HttpClient http)
    {
        await app.StartAsync();
        string url = BaseUrl(app);
        await WaitReadyAsync(http, url);
        return url;
    }

    /// <summary>Stops and disposes a host started by <see cref="StartReadyAsync"/>.</summary>
    public static async Task StopAsync(WebApplication app)
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }

    public static async Task WaitReadyAsync(HttpClient http, string baseUrl)
    {
        await WaitUntilAsync(async () =>
        {
            try
            {
                using var response = await http.GetAsync(baseUrl + "/readyz");
                return response.StatusCode == HttpStatusCode.OK;
            }
            catch (HttpRequestException)
            {
                return false;
            }
        }, baseUrl + " to be ready");
    }

    public static HttpRequestMessage Post(string url, object body, string? key = null, string? user = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, url)
        {
            Content = new StringContent(body is string s ? s : JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"),
        };
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (user is not null) request.Headers.Add(GatewayProxyMiddleware.UserHeader, user);
        return request;
    }

    public static async Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> SendJsonAsync(HttpClient http, HttpRequestMessage request)
    {
        var response = await http.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        using var document = JsonDocument.Parse(text.Length == 0 ? "null" : text);
        return (response.StatusCode, document.RootElement.Clone(), response);
    }

    /// <summary>Asserts OpenAI's error shape with the given status, param and (when given) code.</summary>
    public static void AssertError(HttpStatusCode expected, (HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response) result, string? param, string? code = null)
    {
        Assert.Equal(expected, result.Status);
        var error = result.Body.GetProperty("error");
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.False(string.IsNullOrEmpty(error.GetProperty("type").GetString()));
        Assert.True(error.TryGetProperty("param", out var p), "error.param must be present");
        Assert.True(error.TryGetProperty("code", out var c), "error.code must be present");
        if (param is not null) Assert.Equal(param, p.GetString());
        if (code is not null) Assert.Equal(code, c.GetString());
    }

    /// <summary>
    /// Starts a streamed request, reads its first event, then goes away like a client that really
    /// disconnects (HttpClient would otherwise drain the rest of the response to reuse the connection).
    /// </summary>
    public static async Task StreamThenDisconnectAsync(string url, object body, string? key = null)
    {
        using var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 });
        using var cancel = new CancellationTokenSource();
        var response = await client.SendAsync(Post(url, body, key), HttpCompletionOption.ResponseHeadersRead, cancel.Token);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel.Token));
        Assert.StartsWith("data: {", await reader.ReadLineAsync(cancel.Token));
        cancel.Cancel();
        response.Dispose();
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public static string TunegwDll => typeof(ServerTestHost).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().First(a => a.Key == "TunegwDll").Value!;
}

/// <summary>A <c>tunegw worker</c> child process on a loopback port.</summary>
public sealed class WorkerProcess : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();

    public WorkerProcess(string gatewayUrl, string loraDirectory, params string[] extraArgs)
        : this(["--model", Fixtures.LlamaTiny, "--gateway", gatewayUrl, "--lora-dir", loraDirectory, "--max-num-seqs", "8", "--max-batch-tokens", "512", .. extraArgs])
    {
    }

    /// <summary><c>tunegw worker</c> on a free port with only <paramref name="args"/> besides the port, the device and the log level.</summary>
    public WorkerProcess(IEnumerable<string> args)
    {
        Port = ServerTestHost.FreePort();
        Url = $"http://127.0.0.1:{Port}";
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[] { ServerTestHost.TunegwDll, "worker", "--device", "cpu", "--urls", Url, "--log-level", "Warning" }.Concat(args))
            start.ArgumentList.Add(arg);
        start.Environment["OMP_NUM_THREADS"] = "1";
        _process = Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start");
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) _output.Enqueue(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) _output.Enqueue(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public int Port { get; }
    public string Url { get; }
    public bool HasExited => _process.HasExited;
    public string Output => string.Join("\n", _output);

    public void Kill()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.WaitForExit(10_000);
    }

    public void Dispose()
    {
        try
        {
            Kill();
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }
}
