using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Worker;

/// <summary>Where a worker's state goes: the gateway over HTTP, or an in-process gateway.</summary>
public interface IWorkerStateSink
{
    Task PublishAsync(WorkerState state, CancellationToken cancellationToken);
    /// <summary>Says the worker is leaving (graceful shutdown), so the gateway stops routing to it at once.</summary>
    Task RemoveAsync(string workerId, CancellationToken cancellationToken);
}

/// <summary>Posts state to <c>{gateway}/internal/workers</c> with a key of the gateway's worker role.</summary>
public sealed class HttpWorkerStateSink(HttpClient http, string gatewayUrl, string? key) : IWorkerStateSink
{
    private readonly Uri _endpoint = new(gatewayUrl.TrimEnd('/') + "/internal/workers");

    public async Task PublishAsync(WorkerState state, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, _endpoint) { Content = JsonContent.Create(state, options: ServerJson.Options) };
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        if (response.StatusCode is System.Net.HttpStatusCode.Unauthorized or System.Net.HttpStatusCode.Forbidden)
            throw new HttpRequestException($"The gateway refused the registration ({(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false)}); "
                + "--gateway-key (TUNEGW_GATEWAY_KEY) must be a key of the gateway's worker role, and the advertised URL on its --worker-allow list", null, response.StatusCode);
        response.EnsureSuccessStatusCode();
    }

    public async Task RemoveAsync(string workerId, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Delete, new Uri(_endpoint + "/" + Uri.EscapeDataString(workerId)));
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
    }
}

/// <summary>
/// Pushes the worker's state to the gateway when it changes (adapters loaded or evicted, queue,
/// batch, KV cache), at most ten times a second, and as a heartbeat otherwise; withdraws the worker
/// on shutdown.
/// </summary>
public sealed class WorkerStateReporter(EngineHost host, WorkerStatus status, WorkerOptions options, IWorkerStateSink sink, IHostApplicationLifetime lifetime,
    ILogger<WorkerStateReporter> logger)
    : BackgroundService
{
    private static readonly TimeSpan MinInterval = TimeSpan.FromMilliseconds(100);
    private readonly Channel<bool> _changed = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            // Report once listening (the advertised URL may be a port picked at bind time) and loaded.
            var started = new TaskCompletionSource();
            using (lifetime.ApplicationStarted.Register(() => started.TrySetResult()))
                await started.Task.WaitAsync(stoppingToken).ConfigureAwait(false);
            await host.Loaded.WaitAsync(stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }
        if (host.Engine is null) return;
        void Signal() => _changed.Writer.TryWrite(true);
        host.StateChanged += Signal;
        host.Stepped += Signal;
        try
        {
            WorkerState? last = null;
            DateTimeOffset lastSent = default;
            bool failing = false;
            while (!stoppingToken.IsCancellationRequested)
            {
                var state = status.Snapshot();
                if (last is null || !SameRouting(state, last) || DateTimeOffset.UtcNow - lastSent >= options.Heartbeat)
                {
                    try
                    {
                        await sink.PublishAsync(state, stoppingToken).ConfigureAwait(false);
                        if (failing) logger.LogInformation("Reporting state to the gateway again");
                        failing = false;
                        last = state;
                        lastSent = DateTimeOffset.UtcNow;
                    }
                    catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !stoppingToken.IsCancellationRequested)
                    {
                        if (!failing) logger.LogWarning("Cannot report state to the gateway: {Message}; retrying", ex.Message);
                        failing = true;
                        last = null;
                    }
                }
                // Wait for a change or the next heartbeat, then let changes settle (<= 10 reports a second).
                using var beat = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                beat.CancelAfter(options.Heartbeat);
                try
                {
                    await _changed.Reader.ReadAsync(beat.Token).ConfigureAwait(false);
                    await Task.Delay(MinInterval, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
                {
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            host.StateChanged -= Signal;
            host.Stepped -= Signal;
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(2));
            await sink.RemoveAsync(status.WorkerId, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or InvalidOperationException)
        {
            logger.LogDebug("Could not withdraw from the gateway: {Message}", ex.Message);
        }
    }

    /// <summary>Equal in everything routing looks at (KV use to the percent).</summary>
    private static bool SameRouting(WorkerState a, WorkerState b) =>
        a.Ready == b.Ready && a.BaseModel == b.BaseModel && a.QueueDepth == b.QueueDepth && a.Running == b.Running
        && a.FreeAdapterSlots == b.FreeAdapterSlots && Math.Abs(a.KvCacheUsage - b.KvCacheUsage) < 0.01
        && a.ResidentAdapters.SequenceEqual(b.ResidentAdapters) && a.LoadedAdapters.SequenceEqual(b.LoadedAdapters);
}
