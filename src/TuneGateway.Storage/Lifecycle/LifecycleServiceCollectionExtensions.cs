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
            services.AddSingleton(sp => new RedisLifecycleStore(sp.GetRequiredService<IConnectionMultiplexer>(), keyPrefix, sp.GetService<TimeProvider>()));
            AddViews<RedisLifecycleStore>(services);
        }
        else
        {
            services.AddSingleton(sp => new FileLifecycleStore(dataDirectory, sp.GetService<TimeProvider>()));
            AddViews<FileLifecycleStore>(services);
        }
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

    private static void AddViews<T>(IServiceCollection services) where T : class, IAdapterRegistry, IAliasStore, IPipelineStore, IApprovalStore, ICanaryStore, IJobHistory, ILeaseManager
    {
        services.AddSingleton<IAdapterRegistry>(sp => sp.GetRequiredService<T>());
        services.AddSingleton<IAliasStore>(sp => sp.GetRequiredService<T>());
        services.AddSingleton<IAliasReader>(sp => sp.GetRequiredService<T>());
        services.AddSingleton<IPipelineStore>(sp => sp.GetRequiredService<T>());
        services.AddSingleton<IPipelineStateStore>(sp => sp.GetRequiredService<T>());
        services.AddSingleton<IApprovalStore>(sp => sp.GetRequiredService<T>());
        services.AddSingleton<ICanaryStore>(sp => sp.GetRequiredService<T>());
        services.AddSingleton<IJobHistory>(sp => sp.GetRequiredService<T>());
        services.AddSingleton<ILeaseManager>(sp => sp.GetRequiredService<T>());
    }
}
