using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using TuneGateway.Storage;

namespace TuneGateway.Gateway.Proxy;

/// <summary>
/// How the gateway (and serve) logs its traffic: the store, and overrides of the options in
/// configuration section <c>TuneGateway:TrafficLog</c> (<see cref="TrafficLogOptions"/>: sample rate,
/// redaction rules, opt-out key ids, queue and spill bounds, retention). Flags win over configuration.
/// </summary>
/// <remarks>
/// The store is Redis when a connection string is given (here or as <c>RedisConnectionString</c> in
/// configuration); otherwise the embedded file store under the data directory given here, in
/// configuration, or else <see cref="DefaultDataDirectory"/>. With none of them the log is off.
/// </remarks>
public sealed record TrafficLogSettings
{
    /// <summary>False turns the traffic log off (<c>--no-traffic-log</c>; also <c>TuneGateway:TrafficLog:Enabled=false</c>).</summary>
    public bool Enabled { get; init; } = true;
    /// <summary>StackExchange.Redis connection string (<c>--redis</c>).</summary>
    public string? RedisConnectionString { get; init; }
    /// <summary>Directory of the embedded store and of the spill (<c>--data-dir</c>).</summary>
    public string? DataDirectory { get; init; }
    /// <summary>The data directory when neither a flag nor configuration names one (serve: <c>./data</c>); null: no embedded store by default.</summary>
    public string? DefaultDataDirectory { get; init; }
    /// <summary>Fraction of requests logged, 0 to 1 (<c>--traffic-sample-rate</c>).</summary>
    public double? SampleRate { get; init; }
    /// <summary>Last word on the options (tests shrink bounds and timeouts with it).</summary>
    public Action<TrafficLogOptions>? Configure { get; init; }
}

/// <summary>Registers the traffic log of a gateway host from <see cref="TrafficLogSettings"/> and configuration.</summary>
internal static class TrafficLogSetup
{
    public const string SectionName = "TuneGateway:" + TrafficLogOptions.SectionName;

    /// <summary>
    /// Registers the log (<see cref="TrafficLogServiceCollectionExtensions.AddTrafficLog"/>, one shared Redis
    /// multiplexer when Redis is used) and the <see cref="TrafficLogObserver"/>.
    /// </summary>
    /// <returns>Where traffic goes, for the startup log; null when the log is off.</returns>
    public static string? AddGatewayTrafficLog(this IServiceCollection services, IConfiguration configuration, TrafficLogSettings? settings)
    {
        if (settings is null) return null;
        var section = configuration.GetSection(SectionName);
        if (!settings.Enabled || section.GetValue<bool?>("Enabled") == false) return null;

        bool configuredDirectory = !string.IsNullOrWhiteSpace(section[nameof(TrafficLogOptions.DataDirectory)]);
        void Configure(TrafficLogOptions options)
        {
            section.Bind(options);
            if (!string.IsNullOrWhiteSpace(settings.RedisConnectionString)) options.RedisConnectionString = settings.RedisConnectionString;
            if (!string.IsNullOrWhiteSpace(settings.DataDirectory)) options.DataDirectory = settings.DataDirectory;
            else if (!configuredDirectory && settings.DefaultDataDirectory is { } fallback) options.DataDirectory = fallback;
            if (settings.SampleRate is { } rate) options.SampleRate = rate;
            settings.Configure?.Invoke(options);
        }

        var resolved = new TrafficLogOptions();
        Configure(resolved);
        bool embedded = !string.IsNullOrWhiteSpace(settings.DataDirectory) || configuredDirectory || settings.DefaultDataDirectory is not null;
        if (!resolved.UsesRedis && !embedded) return null;

        services.AddTrafficLog(Configure);
        services.AddSingleton<TrafficLogObserver>();
        string sampled = resolved.SampleRate < 1 ? $", sampling {resolved.SampleRate:P0}" : "";
        return resolved.UsesRedis
            ? $"Redis ({RedisEndpoints(resolved.RedisConnectionString!)}), spilling to {Path.GetFullPath(resolved.EffectiveSpillDirectory)} during outages{sampled}"
            : $"the embedded store under {Path.GetFullPath(resolved.DataDirectory)}{sampled}";
    }

    /// <summary>The endpoints of a connection string, without its password or other settings.</summary>
    private static string RedisEndpoints(string connectionString) =>
        string.Join(", ", RedisConnection.CreateOptions(connectionString).EndPoints.Select(e => e is System.Net.DnsEndPoint dns ? $"{dns.Host}:{dns.Port}" : e.ToString()));
}
