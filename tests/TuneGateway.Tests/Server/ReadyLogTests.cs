using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TuneGateway.Gateway;
using TuneGateway.Cli.Hosting;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Worker;
using TuneGateway.Tests.Engine;

namespace TuneGateway.Tests.Server;

/// <summary>
/// <c>serve</c> logs "ready: serving MODEL with adapters … on URL" once the model serves, the
/// moment <c>/readyz</c> turns 200; never while loading, never when loading fails.
/// </summary>
public sealed class ReadyLogTests
{
    /// <summary>Every log line, with whether the engine was ready when it was written.</summary>
    private sealed class CapturingLogger : ILoggerProvider, ILogger
    {
        public ConcurrentQueue<(string Category, string Message, bool ReadyThen)> Lines { get; } = new();
        public Func<bool> IsReady { get; set; } = () => false;
        private string _category = "";

        public ILogger CreateLogger(string categoryName) => new CapturingLogger { _category = categoryName, Sink = this };
        private CapturingLogger? Sink { get; init; }
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var sink = Sink ?? this;
            sink.Lines.Enqueue((_category, formatter(state, exception), sink.IsReady()));
        }

        public void Dispose()
        {
        }
    }

    private static (Microsoft.AspNetCore.Builder.WebApplication App, CapturingLogger Log) Create(string modelDirectory)
    {
        var capture = new CapturingLogger();
        var settings = ServerTestHost.Settings() with
        {
            ConfigureLogging = logging => logging.SetMinimumLevel(LogLevel.Information).AddProvider(capture),
        };
        var app = ServeHost.Create(new WorkerOptions { Engine = ServerTestHost.TinyEngine() with { ModelDirectory = modelDirectory } }, new GatewayOptions(), settings);
        var host = app.Services.GetRequiredService<EngineHost>();
        capture.IsReady = () => host.IsReady;
        return (app, capture);
    }

    [Fact]
    public async Task TheReadyLineComesOnceTheModelServesAndAfterTheServerListens()
    {
        var (app, log) = Create(Fixtures.LlamaTiny);
        await using var _ = app;
        await app.StartAsync();
        string url = ServerTestHost.BaseUrl(app);
        using var http = new HttpClient();
        await ServerTestHost.WaitReadyAsync(http, url);
        await ServerTestHost.WaitUntilAsync(() => Task.FromResult(log.Lines.Any(l => l.Message.StartsWith(EngineHost.ReadyLinePrefix, StringComparison.Ordinal))), "the ready line");

        var lines = log.Lines.ToArray();
        var ready = Assert.Single(lines, l => l.Message.StartsWith(EngineHost.ReadyLinePrefix, StringComparison.Ordinal));
        Assert.True(ready.ReadyThen, "the ready line was logged before the engine was ready");
        Assert.Contains(url, ready.Message);
        Assert.Contains("with adapters", ready.Message);
        Assert.Contains(Fixtures.LlamaTinyAdapters, ready.Message);
        int listening = Array.FindIndex(lines, l => l.Message.StartsWith("Now listening on", StringComparison.Ordinal));
        Assert.True(listening >= 0 && listening < Array.IndexOf(lines, ready), "the ready line must come after 'Now listening'");
        await app.StopAsync();
    }

    [Fact]
    public async Task AModelThatFailsToLoadLogsNoReadyLine()
    {
        using var empty = new TempDirectory();
        var (app, log) = Create(empty.Path);
        await using var _ = app;
        try
        {
            await app.StartAsync();
        }
        catch (OperationCanceledException)
        {
            // The load can fail (and stop the application) before the server has bound its port.
        }
        var host = app.Services.GetRequiredService<EngineHost>();
        await host.Loaded;
        Assert.NotNull(host.LoadError);
        Assert.DoesNotContain(log.Lines, l => l.Message.StartsWith(EngineHost.ReadyLinePrefix, StringComparison.Ordinal));
        Assert.Contains(log.Lines, l => l.Message.StartsWith("The model could not be loaded", StringComparison.Ordinal));
    }
}
