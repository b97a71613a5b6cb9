using System.Text.RegularExpressions;
using TuneGateway.Controller;
using TuneGateway.Storage.Lifecycle;
using TuneGateway.Storage.Lifecycle.Embedded;
using TuneGateway.Tests.Deployment;

namespace TuneGateway.Tests.Controller;

/// <summary>
/// The lifecycle has one writer: <see cref="LifecycleManager"/> (and the stores themselves). It
/// hands out read interfaces only, and no other file of src/ calls a write method of the
/// registry, approvals, pipeline definitions or aliases.
/// </summary>
public class LifecycleOwnershipTests
{
    private static readonly Regex StoreWrite = new(
        @"\.(TransitionAsync|RegisterAsync|SetEvaluationAsync|AppendAuditAsync|ResolveAsync|UpsertAsync|SetPausedAsync)\(|\b[Aa]pprovals\.RequestAsync\(|\b[Aa]liases\.(SetAsync|DeleteAsync)\(|\bregistry\.AllocateVersionAsync\(",
        RegexOptions.Compiled);

    /// <summary>Files (or folders, ending in '/') allowed to write, and why.</summary>
    private static readonly Dictionary<string, string> Writers = new()
    {
        ["src/TuneGateway.Storage/Lifecycle/LifecycleManager.cs"] = "the owner",
        ["src/TuneGateway.Storage/Lifecycle/Embedded/"] = "the embedded stores",
        ["src/TuneGateway.Storage/Lifecycle/Redis/"] = "the Redis stores",
    };

    private static bool IsWriter(string file) => Writers.Keys.Any(w => w.EndsWith('/') ? file.StartsWith(w, StringComparison.Ordinal) : file == w);

    [Fact]
    public void NoOtherFileOfSrcWritesLifecycleState()
    {
        string root = DeployValidator.RepoRoot;
        var offenders = Directory.EnumerateFiles(Path.Combine(root, "src"), "*.cs", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(root, f).Replace('\\', '/'))
            .Where(f => !f.Contains("/bin/", StringComparison.Ordinal) && !f.Contains("/obj/", StringComparison.Ordinal) && !IsWriter(f))
            .SelectMany(f => File.ReadLines(Path.Combine(root, f)).Select((line, i) => (File: f, Line: i + 1, Text: line.Trim())))
            .Where(l => StoreWrite.IsMatch(l.Text) && !l.Text.StartsWith("//", StringComparison.Ordinal))
            .Select(l => $"{l.File}:{l.Line}: {l.Text}")
            .ToArray();
        Assert.True(offenders.Length == 0, "Lifecycle state written outside LifecycleManager:\n" + string.Join("\n", offenders));
    }

    [Fact]
    public void TheOwnerHandsOutReadInterfacesOnly()
    {
        Type[] writers = [typeof(IAdapterRegistry), typeof(IAliasStore), typeof(IApprovalStore), typeof(IPipelineStore), typeof(ICanaryStore)];
        var exposed = typeof(LifecycleManager).GetProperties().Select(p => p.PropertyType).ToArray();
        Assert.NotEmpty(exposed);
        Assert.DoesNotContain(exposed, t => writers.Any(w => w.IsAssignableFrom(t)));
    }

    /// <summary>
    /// The compiler's half of the rule: the write interfaces, the stores that implement them and the
    /// owner's constructor are internal to Storage, so another assembly cannot even name them.
    /// </summary>
    [Fact]
    public void NothingOutsideStorageCanReachAStoreWrite()
    {
        Type[] writers = [typeof(IAdapterRegistry), typeof(IAliasStore), typeof(IApprovalStore), typeof(IPipelineStore), typeof(ICanaryStore)];
        var stores = typeof(LifecycleManager).Assembly.GetTypes().Where(t => t.IsClass && writers.Any(w => w.IsAssignableFrom(t))).ToArray();
        Assert.Equal(11, stores.Length); // five embedded, five Redis, the in-memory aliases
        Type[] internals = [.. writers, .. stores.Where(t => t != typeof(InMemoryAliasStore))];
        Assert.All(internals, t => Assert.False(t.IsVisible, $"{t.Name} is visible outside {t.Assembly.GetName().Name}"));
        // The in-memory aliases (a gateway without lifecycle stores) are public for their editor; their store methods are not.
        Assert.DoesNotContain(typeof(InMemoryAliasStore).GetMethods(), m => m.Name is "SetAsync" or "DeleteAsync");
        Assert.Empty(typeof(LifecycleManager).GetConstructors());
        Assert.All(typeof(LifecycleManager).Assembly.GetExportedTypes().SelectMany(t => t.GetMethods().Where(m => m.DeclaringType == t)),
            m => Assert.DoesNotContain(m.GetParameters(), p => internals.Contains(p.ParameterType)));
    }

    [Fact]
    public void TheScanWouldSeeAWrite()
    {
        // The rule's own check: the calls the owner makes are ones it matches.
        string owner = File.ReadAllText(Path.Combine(DeployValidator.RepoRoot, "src/TuneGateway.Storage/Lifecycle/LifecycleManager.cs"));
        Assert.True(StoreWrite.Matches(owner).Count >= 8);
    }
}
