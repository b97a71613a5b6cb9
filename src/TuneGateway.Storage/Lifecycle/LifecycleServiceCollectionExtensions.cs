using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;
using TuneGateway.Storage.Lifecycle.Embedded;
using TuneGateway.Storage.Lifecycle.Redis;

namespace TuneGateway.Storage.Lifecycle;

/// <summary>Registration of the lifecycle stores (Redis when a connection string is given, else the embedded store) and of their one writer.</summary>
public static class LifecycleServiceCollectionExtensions
{
    public static IServiceCollection AddLifecycleStores(this IServiceCollection services, string? redisConnectionString, string dataDirectory, string keyPrefix = "tunegw")
    {
        if (redisConnectionString is not null)
        {
            services.TryAddSingleton<IConnectionMultiplexer>(_ => RedisConnection.Connect(redisConnectionString));
            services.AddSingleton(sp => RedisLifecycleStores.Open(sp.GetRequiredService<IConnectionMultiplexer>(), keyPrefix, sp.GetService<TimeProvider>()));
        }
        else
        {
            services.AddSingleton(sp => EmbeddedLifecycleStores.Open(dataDirectory, sp.GetService<TimeProvider>()));
        }
        // Each interface is its store of the backend's set (the set, a singleton, closes their shared context).
        services.AddSingleton(sp => sp.GetRequiredService<LifecycleStoreSet>().Registry);
        services.AddSingleton(sp => sp.GetRequiredService<LifecycleStoreSet>().Aliases);
        services.AddSingleton<IAliasReader>(sp => sp.GetRequiredService<LifecycleStoreSet>().Aliases);
        services.AddSingleton(sp => sp.GetRequiredService<LifecycleStoreSet>().Pipelines);
        services.AddSingleton<IPipelineStateStore>(sp => sp.GetRequiredService<LifecycleStoreSet>().Pipelines);
        services.AddSingleton(sp => sp.GetRequiredService<LifecycleStoreSet>().Approvals);
        services.AddSingleton(sp => sp.GetRequiredService<LifecycleStoreSet>().Canaries);
        services.AddSingleton(sp => sp.GetRequiredService<LifecycleStoreSet>().Jobs);
        services.AddSingleton(sp => sp.GetRequiredService<LifecycleStoreSet>().Leases);
        return services;
    }

    /// <summary>
    /// <see cref="LifecycleManager"/>, the one writer (promote, roll back, approvals, pipelines),
    /// over the lifecycle stores, which must be registered too. Enough for a gateway that serves
    /// the operator API while the controller runs elsewhere.
    /// </summary>
    public static IServiceCollection AddLifecycleManagement(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton(sp => new LifecycleManager(sp.GetRequiredService<IAdapterRegistry>(), sp.GetRequiredService<IAliasStore>(),
            sp.GetRequiredService<IPipelineStore>(), sp.GetRequiredService<IApprovalStore>(), sp.GetRequiredService<ICanaryStore>(),
            sp.GetRequiredService<ILogger<LifecycleManager>>(), sp.GetService<TimeProvider>()));
        services.TryAddSingleton<IAliasEditor>(sp => sp.GetRequiredService<LifecycleManager>());
        return services;
    }

}
