using System.Reflection;
using System.Text.Json;
using TuneGateway.Gateway;
using TuneGateway.Tests.Deployment;
using TuneGateway.Worker;

namespace TuneGateway.Tests.Gateway;

/// <summary>
/// Issue #15's rule: a gateway flips alias weights and serves the operator API without linking the
/// engine, training, the controller, Quartz or TorchSharp. Two views of the same rule: what the
/// project restores (every package and project, referenced directly or transitively, used or not)
/// and what the compiled assembly references (closed over the assemblies those reference).
/// </summary>
public class GatewayDependencyTests
{
    private static readonly string[] Forbidden = ["TuneGateway.Engine", "TuneGateway.Training", "TuneGateway.Controller", "Quartz", "TorchSharp"];

    /// <summary>The names among <paramref name="names"/> that are, or are packages of, a forbidden component (Quartz.Extensions.Hosting, TorchSharp-cpu).</summary>
    private static string[] Offenders(IEnumerable<string> names) =>
        [.. names.Where(n => Forbidden.Any(f => n.Equals(f, StringComparison.OrdinalIgnoreCase)
            || n.StartsWith(f + ".", StringComparison.OrdinalIgnoreCase) || n.StartsWith(f + "-", StringComparison.OrdinalIgnoreCase))).Distinct().Order()];

    /// <summary>Every library (package or project) the restore of <paramref name="project"/> resolved, for any of its targets.</summary>
    private static IEnumerable<string> RestoredLibraries(string project)
    {
        string assets = Path.Combine(DeployValidator.RepoRoot, "src", project, "obj", "project.assets.json");
        Assert.True(File.Exists(assets), $"{assets} is missing: the project has not been restored.");
        using var document = JsonDocument.Parse(File.ReadAllText(assets));
        return [.. document.RootElement.GetProperty("targets").EnumerateObject()
            .SelectMany(target => target.Value.EnumerateObject().Select(library => library.Name.Split('/')[0]))];
    }

    /// <summary>The assembly's references, and theirs, loaded by name (this test process can load them all).</summary>
    private static IEnumerable<string> ReferenceClosure(Assembly root)
    {
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var pending = new Stack<AssemblyName>(root.GetReferencedAssemblies());
        while (pending.TryPop(out var name))
        {
            if (!seen.Add(name.Name!)) continue;
            Assembly loaded;
            try
            {
                loaded = Assembly.Load(name);
            }
            catch (FileNotFoundException)
            {
                // A facade the runtime does not ship (a reference assembly of some package): it is still named, and no more to follow.
                continue;
            }
            foreach (var reference in loaded.GetReferencedAssemblies()) pending.Push(reference);
        }
        return seen;
    }

    [Fact]
    public void TheGatewayProjectRestoresNoEngineTrainingControllerQuartzOrTorchSharp()
    {
        var libraries = RestoredLibraries("TuneGateway.Gateway").ToArray();
        Assert.Contains("TuneGateway.Storage", libraries);
        Assert.Empty(Offenders(libraries));
    }

    [Fact]
    public void TheGatewayAssemblyReferencesNoEngineTrainingControllerQuartzOrTorchSharp()
    {
        var closure = ReferenceClosure(typeof(GatewayHost).Assembly).ToArray();
        Assert.Contains("TuneGateway.Storage", closure);
        Assert.Empty(Offenders(closure));
    }

    /// <summary>The checks' own check: on the worker, which does link the engine, both views see it and TorchSharp.</summary>
    [Fact]
    public void BothViewsSeeTheEngineWhereItIsLinked()
    {
        Assert.Equal(["TorchSharp", "TuneGateway.Engine"], Offenders(ReferenceClosure(typeof(WorkerHost).Assembly)));
        var restored = Offenders(RestoredLibraries("TuneGateway.Worker"));
        Assert.Contains("TuneGateway.Engine", restored);
        Assert.Contains("TorchSharp", restored);
        Assert.Contains(restored, n => n.StartsWith("TorchSharp-", StringComparison.Ordinal));
    }
}
