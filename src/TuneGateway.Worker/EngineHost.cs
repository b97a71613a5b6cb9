using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TuneGateway.Engine.Serving;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Worker;

/// <summary>
/// Owns the worker's <see cref="InferenceEngine"/>: loads it in the background when the host
/// starts (so <c>/healthz</c> answers during a long load and <c>/readyz</c> says when it is done),
/// stops the application if loading fails, and disposes it at shutdown.
/// </summary>
public sealed class EngineHost : IHostedService, IDisposable
{
    private readonly WorkerOptions _options;
    private readonly ILoggerFactory _loggers;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ILogger _logger;
    private volatile InferenceEngine? _engine;
    private volatile bool _stopping;
    private Task? _loading;
    private readonly IServiceProvider? _services;
    private int _announced;

    public EngineHost(WorkerOptions options, ILoggerFactory loggers, IHostApplicationLifetime lifetime, IServiceProvider? services = null)
    {
        _options = options;
        _loggers = loggers;
        _lifetime = lifetime;
        _services = services;
        _logger = loggers.CreateLogger<EngineHost>();
        ToolCallFormat = Tools.ToolCallFormat.ByName(options.Engine.ToolCallParser);
    }

    /// <summary>How chat outputs are read for tool calls (<c>--tool-call-parser</c>); null when not configured.</summary>
    public Tools.ToolCallFormat? ToolCallFormat { get; }

    /// <summary>The start of the line logged once the model serves (<see cref="AnnounceReady"/>).</summary>
    public const string ReadyLinePrefix = "ready: serving";

    /// <summary>The engine once loaded, else null.</summary>
    public InferenceEngine? Engine => _engine;

    /// <summary>Why loading failed (the application stops); the CLI reports it.</summary>
    public Exception? LoadError { get; private set; }

    /// <summary>Loaded, and not shutting down.</summary>
    public bool IsReady => _engine is not null && !_stopping;

    /// <summary>Raised when the engine is loaded and whenever adapters change (on engine threads; keep it cheap).</summary>
    public event Action? StateChanged;

    /// <summary>Raised after each scheduler step (on the scheduler thread; keep it cheap).</summary>
    public event Action? Stepped;

    /// <summary>The engine, or 503 while it loads or after shutdown began.</summary>
    public InferenceEngine Require()
    {
        var engine = _engine;
        if (engine is not null && !_stopping) return engine;
        throw new ApiException(StatusCodes.Status503ServiceUnavailable,
            _stopping ? "The server is shutting down." : "The model is still loading; retry shortly.", ApiErrorTypes.Unavailable,
            retryAfter: TimeSpan.FromSeconds(1));
    }

    /// <summary>A task that completes when loading has finished (or failed).</summary>
    public Task Loaded => _loading ?? Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _loading = Task.Run(LoadAsync, CancellationToken.None);
        return Task.CompletedTask;
    }

    private async Task LoadAsync()
    {
        try
        {
            var engine = await InferenceEngine.LoadAsync(_options.Engine, _loggers, _lifetime.ApplicationStopping).ConfigureAwait(false);
            engine.Adapters.StateChanged += () => StateChanged?.Invoke();
            engine.Scheduler.StepCompleted += _ => Stepped?.Invoke();
            _engine = engine;
            if (_stopping)
            {
                engine.Dispose();
                _engine = null;
                return;
            }
            StateChanged?.Invoke();
            // "Now listening" comes when the port opens, long before a large model has loaded; this line
            // comes when both have happened, whichever is last, so it is the one to wait for.
            _lifetime.ApplicationStarted.Register(AnnounceReady);
        }
        catch (OperationCanceledException) when (_lifetime.ApplicationStopping.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            LoadError = ex;
            _logger.LogCritical("The model could not be loaded: {Message}", ex.Message);
            _lifetime.StopApplication();
        }
    }

    /// <summary>Logs, once, that the model serves: its name, its adapters and the addresses (the same moment <c>/readyz</c> turns 200).</summary>
    private void AnnounceReady()
    {
        var engine = _engine;
        if (engine is null || _stopping || Interlocked.Exchange(ref _announced, 1) == 1) return;
        var adapters = _options.Engine.Adapters;
        string loaded = string.Join(", ", engine.Adapters.List().Select(a => a.Name).Order(StringComparer.Ordinal));
        string[] directories = [.. new[] { adapters.LoraDirectory }.Concat(adapters.AdditionalLoraDirectories).OfType<string>()];
        string adapterText = (loaded.Length > 0 ? loaded : "none loaded") + (directories.Length > 0 ? $" (more on demand from {string.Join(", ", directories)})" : "");
        var addresses = _services?.GetService<IServer>()?.Features.Get<IServerAddressesFeature>()?.Addresses;
        string urls = addresses is { Count: > 0 } ? string.Join(", ", addresses) : "this host";
        _logger.LogInformation(ReadyLinePrefix + " {Model} with adapters {Adapters} on {Urls}", engine.ModelId, adapterText, urls);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _stopping = true;
        if (_loading is not null) await _loading.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public void Dispose()
    {
        _stopping = true;
        _engine?.Dispose();
        _engine = null;
    }
}
