using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace TuneGateway.Storage;

/// <summary>DI registration of the traffic log and the feedback store.</summary>
public static class TrafficLogServiceCollectionExtensions
{
    /// <summary>
    /// Registers the traffic log: <see cref="ITrafficLog"/> (request path), <see cref="IFeedbackService"/>
    /// (<c>POST /v1/feedback</c>), <see cref="ITrafficReader"/> (admin API, retraining loop),
    /// <see cref="ITrafficStore"/>, and the background writer as a hosted service.
    /// </summary>
    /// <remarks>
    /// With <see cref="TrafficLogOptions.RedisConnectionString"/> the store is <see cref="RedisTrafficStore"/>
    /// over the shared <see cref="IConnectionMultiplexer"/> (registered here via
    /// <see cref="RedisConnection.AddRedisConnection"/> unless one is registered already); without it, the
    /// store is <see cref="FileTrafficStore"/> under <see cref="TrafficLogOptions.DataDirectory"/>.
    /// Options are validated when the host starts.
    /// </remarks>
    public static IServiceCollection AddTrafficLog(this IServiceCollection services, Action<TrafficLogOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var builder = services.AddOptions<TrafficLogOptions>();
        if (configure is not null)
        {
            builder.Configure(configure);
        }

        builder.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<TrafficLogOptions>, TrafficLogOptionsValidator>());

        // The store is chosen from the options as this call sees them, so that the multiplexer can be
        // registered for every Redis-backed component to share.
        var probe = new TrafficLogOptions();
        configure?.Invoke(probe);
        if (probe.UsesRedis)
        {
            services.AddRedisConnection(probe.RedisConnectionString!);
        }

        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<TrafficPrivacyPolicy>();
        services.TryAddSingleton<ITrafficStore>(CreateStore);
        services.TryAddSingleton<ITrafficReader>(provider => provider.GetRequiredService<ITrafficStore>());
        services.TryAddSingleton<TrafficLogWriter>();
        services.TryAddSingleton<ITrafficLog>(provider => provider.GetRequiredService<TrafficLogWriter>());
        services.AddHostedService(provider => provider.GetRequiredService<TrafficLogWriter>());
        services.TryAddSingleton<IFeedbackService>(provider => new FeedbackService(
            provider.GetRequiredService<ITrafficStore>(),
            provider.GetRequiredService<TrafficPrivacyPolicy>(),
            provider.GetRequiredService<IOptions<TrafficLogOptions>>(),
            provider.GetRequiredService<ITrafficLog>(),
            provider.GetRequiredService<TimeProvider>(),
            provider.GetService<ILogger<FeedbackService>>()));
        return services;
    }

    private static ITrafficStore CreateStore(IServiceProvider provider)
    {
        var options = provider.GetRequiredService<IOptions<TrafficLogOptions>>();
        var time = provider.GetRequiredService<TimeProvider>();
        if (!options.Value.UsesRedis)
        {
            return new FileTrafficStore(options, time, provider.GetService<ILogger<FileTrafficStore>>());
        }

        var redis = provider.GetService<IConnectionMultiplexer>()
            ?? throw new InvalidOperationException(
                "The traffic log is configured for Redis but no IConnectionMultiplexer is registered; call services.AddRedisConnection(...).");
        return new RedisTrafficStore(redis, options, time, provider.GetService<ILogger<RedisTrafficStore>>());
    }
}
