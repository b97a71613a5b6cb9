using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StackExchange.Redis;

namespace TuneGateway.Storage;

/// <summary>
/// Creates the process's single Redis connection (<see cref="IConnectionMultiplexer"/>) with settings that
/// suit a gateway: it never fails startup because Redis is down (<c>AbortOnConnectFail=false</c>), it
/// reconnects in the background, and its timeouts are short enough that callers notice an outage quickly.
/// Every Redis-backed store of the project should share the multiplexer this registers.
/// </summary>
public static class RedisConnection
{
    /// <summary>Default connect timeout.</summary>
    public static readonly TimeSpan DefaultConnectTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Default timeout of synchronous and asynchronous commands.</summary>
    public static readonly TimeSpan DefaultCommandTimeout = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Parses a StackExchange.Redis configuration string and applies the gateway defaults: no abort on
    /// connect failure, 5 s connect and command timeouts, 3 connect retries, 30 s keep-alive, and
    /// reconnects backing off from 0.5 s to 5 s. Settings spelled out in the string win over the defaults,
    /// except <c>abortConnect</c>, which is always false.
    /// </summary>
    public static ConfigurationOptions CreateOptions(string connectionString)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        var options = ConfigurationOptions.Parse(connectionString);
        var given = new HashSet<string>(
            connectionString.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(part => part.Split('=', 2))
                .Where(pair => pair.Length == 2)
                .Select(pair => pair[0].Trim()),
            StringComparer.OrdinalIgnoreCase);

        options.AbortOnConnectFail = false;
        if (!given.Contains("connectTimeout"))
        {
            options.ConnectTimeout = (int)DefaultConnectTimeout.TotalMilliseconds;
        }

        if (!given.Contains("syncTimeout"))
        {
            options.SyncTimeout = (int)DefaultCommandTimeout.TotalMilliseconds;
        }

        if (!given.Contains("asyncTimeout"))
        {
            options.AsyncTimeout = (int)DefaultCommandTimeout.TotalMilliseconds;
        }

        if (!given.Contains("connectRetry"))
        {
            options.ConnectRetry = 3;
        }

        if (!given.Contains("keepAlive"))
        {
            options.KeepAlive = 30;
        }

        options.ReconnectRetryPolicy = new ExponentialRetry(deltaBackOffMilliseconds: 500, maxDeltaBackOffMilliseconds: 5000);
        return options;
    }

    /// <summary>Connects (waiting at most the connect timeout; a server that is down is not an error) and logs connection events.</summary>
    public static async Task<IConnectionMultiplexer> ConnectAsync(string connectionString, ILogger? logger = null)
    {
        var multiplexer = await ConnectionMultiplexer.ConnectAsync(CreateOptions(connectionString)).ConfigureAwait(false);
        return Observe(multiplexer, logger);
    }

    /// <summary>Synchronous <see cref="ConnectAsync"/>, for service factories.</summary>
    public static IConnectionMultiplexer Connect(string connectionString, ILogger? logger = null) =>
        Observe(ConnectionMultiplexer.Connect(CreateOptions(connectionString)), logger);

    /// <summary>
    /// Registers the shared <see cref="IConnectionMultiplexer"/> (unless one is registered already).
    /// </summary>
    public static IServiceCollection AddRedisConnection(this IServiceCollection services, string connectionString)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        services.TryAddSingleton<IConnectionMultiplexer>(provider =>
            Connect(connectionString, provider.GetService<ILoggerFactory>()?.CreateLogger(typeof(RedisConnection).FullName!)));
        return services;
    }

    private static ConnectionMultiplexer Observe(ConnectionMultiplexer multiplexer, ILogger? logger)
    {
        logger ??= NullLogger.Instance;
        multiplexer.ConnectionFailed += (_, e) =>
            logger.LogWarning(e.Exception, "Redis connection to {Endpoint} failed ({FailureType}).", e.EndPoint, e.FailureType);
        multiplexer.ConnectionRestored += (_, e) =>
            logger.LogInformation("Redis connection to {Endpoint} restored.", e.EndPoint);
        multiplexer.ErrorMessage += (_, e) =>
            logger.LogWarning("Redis server {Endpoint} answered with an error: {Message}", e.EndPoint, e.Message);
        multiplexer.InternalError += (_, e) =>
            logger.LogError(e.Exception, "StackExchange.Redis internal error ({Origin}).", e.Origin);
        if (!multiplexer.IsConnected)
        {
            logger.LogWarning(
                "Redis is not reachable yet ({Endpoints}); retrying in the background.",
                string.Join(", ", multiplexer.GetEndPoints().Select(endpoint => endpoint.ToString())));
        }

        return multiplexer;
    }
}
