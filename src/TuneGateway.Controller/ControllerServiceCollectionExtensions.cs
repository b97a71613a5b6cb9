using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Quartz;
using TuneGateway.Controller.Jobs;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Engine.Models;
using TuneGateway.Engine.Tokenization;
using TuneGateway.Storage;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Controller;

/// <summary>Registration of the retraining controller.</summary>
public static class ControllerServiceCollectionExtensions
{
    /// <summary>
    /// The retraining controller: Quartz with one run job and one monitor job per pipeline, the
    /// pipeline runner (curation, a separate trainer process, the offline gate, canaries), the
    /// canary and drift monitors. Needs the lifecycle stores and the traffic log reader.
    /// </summary>
    public static IServiceCollection AddRetrainingController(this IServiceCollection services, ControllerOptions options,
        Func<IServiceProvider, ICompletionClient> completions, ITrainer? trainer = null)
    {
        services.AddLifecycleManagement();
        services.AddSingleton(options);
        services.AddSingleton(completions);
        // A host that registers versions may have added the store for the same directory already.
        services.TryAddSingleton(new ArtifactStore(options.ArtifactDirectory));
        services.AddSingleton(trainer ?? ProcessTrainer.ForCurrentProcess());
        services.AddSingleton(sp => new Curator(sp.GetRequiredService<ITrafficReader>(), new Redactor(new RedactionOptions())));
        services.AddSingleton(_ => HfTokenizer.FromDirectory(options.BaseModelDirectory));
        if (options.SemanticDrift)
        {
            services.AddSingleton<IEmbeddingProvider>(sp => new ModelEmbeddingProvider(
                CausalLanguageModel.Load(options.BaseModelDirectory, TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32, 512),
                sp.GetRequiredService<HfTokenizer>()));
        }
        services.AddSingleton<PipelineRunner>();
        services.AddSingleton<CanaryMonitor>();
        services.AddSingleton(sp => new DriftMonitor(sp.GetRequiredService<LifecycleManager>(), sp.GetRequiredService<ITrafficReader>(),
            sp.GetRequiredService<HfTokenizer>(), sp.GetService<IEmbeddingProvider>(), options, sp.GetRequiredService<ILogger<DriftMonitor>>()));
        services.AddTransient<PipelineRunJob>();
        services.AddTransient<MonitorJob>();
        services.AddSingleton<ControllerScheduler>();
        services.AddHostedService(sp => sp.GetRequiredService<ControllerScheduler>());
        services.AddQuartz(q => q.UseInMemoryStore());
        services.AddQuartzHostedService(o => o.WaitForJobsToComplete = false);
        return services;
    }
}
