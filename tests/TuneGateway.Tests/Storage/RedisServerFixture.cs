using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace TuneGateway.Tests.Storage;

/// <summary>
/// Runs a private <c>redis-server</c> on a free loopback port with a temporary directory, for the tests of
/// one class. It can be stopped (saving its data, like an orderly restart) and started again on the same
/// port. Tests that use it fail with an explanation when <c>redis-server</c> is not installed; they are
/// never skipped.
/// </summary>
public sealed class RedisServerFixture : IAsyncLifetime
{
    /// <summary>Environment variable naming the redis-server executable, if it is not on PATH.</summary>
    public const string ExecutableVariable = "TUNEGW_REDIS_SERVER";

    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(20);
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "tunegw-redis-" + Guid.NewGuid().ToString("N"));
    private readonly StringBuilder _output = new();
    private readonly int? _requestedPort;
    private Process? _process;

    /// <summary>A fixture that picks a free port (xunit creates it).</summary>
    public RedisServerFixture()
    {
    }

    private RedisServerFixture(int port) => _requestedPort = port;

    /// <summary>The port the server listens on (fixed for the fixture's lifetime).</summary>
    public int Port { get; private set; }

    /// <summary>Connection string for StackExchange.Redis.</summary>
    public string ConnectionString => $"127.0.0.1:{Port}";

    /// <summary>Whether the server process is running.</summary>
    public bool IsRunning => _process is { HasExited: false };

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_directory);
        if (_requestedPort is { } port)
        {
            Port = port;
            await StartAsync();
            return;
        }

        Exception? last = null;
        for (var attempt = 0; attempt < 5; attempt++)
        {
            Port = FreePort();
            try
            {
                await StartAsync();
                return;
            }
            catch (InvalidOperationException ex) when (ex.Message.Contains("exited", StringComparison.Ordinal))
            {
                last = ex; // Most likely the port was taken in between; try another.
            }
        }

        throw new InvalidOperationException("Could not start redis-server.", last);
    }

    /// <summary>Starts a server on a given port (dispose it when done).</summary>
    public static async Task<RedisServerFixture> StartOnPortAsync(int port)
    {
        var server = new RedisServerFixture(port);
        await server.InitializeAsync();
        return server;
    }

    /// <summary>Starts the server (again) on <see cref="Port"/>, loading what it saved when stopped.</summary>
    public async Task StartAsync()
    {
        if (IsRunning)
        {
            return;
        }

        var start = new ProcessStartInfo(FindExecutable())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[]
                 {
                     "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", _directory, "--dbfilename", "dump.rdb",
                     "--protected-mode", "no", "--daemonize", "no",
                 })
        {
            start.ArgumentList.Add(argument);
        }

        var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => Capture(e.Data);
        process.ErrorDataReceived += (_, e) => Capture(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;

        var deadline = DateTime.UtcNow + StartTimeout;
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"redis-server exited with code {process.ExitCode} on port {Port}:\n{Output}");
            }

            try
            {
                if (await CommandAsync("PING") == "+PONG")
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is SocketException or IOException)
            {
                // Not listening yet, or still loading its data.
            }

            await Task.Delay(50);
        }

        throw new InvalidOperationException($"redis-server did not answer PING within {StartTimeout}:\n{Output}");
    }

    /// <summary>Stops the server: <c>SHUTDOWN SAVE</c> keeps its data for the next start, <c>NOSAVE</c> loses it.</summary>
    public async Task StopAsync(bool save = true)
    {
        if (_process is not { } process || process.HasExited)
        {
            return;
        }

        try
        {
            await CommandAsync("SHUTDOWN", save ? "SAVE" : "NOSAVE");
        }
        catch (Exception ex) when (ex is SocketException or IOException)
        {
            // The server closes the connection as it exits.
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            await process.WaitForExitAsync();
        }
    }

    /// <summary>Sends one command over a fresh connection and returns the first reply line (<c>+OK</c>, <c>:1</c>, …).</summary>
    public async Task<string?> CommandAsync(params string[] arguments)
    {
        using var client = new TcpClient();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await client.ConnectAsync(IPAddress.Loopback, Port, timeout.Token);
        var stream = client.GetStream();
        var request = new StringBuilder().Append('*').Append(arguments.Length).Append("\r\n");
        foreach (var argument in arguments)
        {
            request.Append('$').Append(Encoding.UTF8.GetByteCount(argument)).Append("\r\n").Append(argument).Append("\r\n");
        }

        await stream.WriteAsync(Encoding.UTF8.GetBytes(request.ToString()), timeout.Token);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return await reader.ReadLineAsync(timeout.Token);
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        await StopAsync(save: false);
        _process?.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort.
        }
    }

    /// <summary>A TCP port on loopback that nothing listens on right now.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Finds redis-server or explains how to get it.</summary>
    public static string FindExecutable()
    {
        var configured = Environment.GetEnvironmentVariable(ExecutableVariable);
        if (!string.IsNullOrEmpty(configured))
        {
            return File.Exists(configured)
                ? configured
                : throw new InvalidOperationException($"{ExecutableVariable} points to '{configured}', which does not exist.");
        }

        var candidates = (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Append("/usr/bin").Append("/usr/local/bin").Append("/opt/homebrew/bin")
            .Select(directory => Path.Combine(directory, "redis-server"));
        return candidates.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException(
                "These tests need a real Redis: redis-server was not found on PATH. Install it (for example " +
                $"'apt-get install redis-server') or set {ExecutableVariable} to its path.");
    }

    private string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    private void Capture(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }
}
