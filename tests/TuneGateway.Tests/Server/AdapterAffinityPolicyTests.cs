using Microsoft.AspNetCore.Http;
using TuneGateway.Gateway.Common;
using TuneGateway.Gateway.Proxy;
using Yarp.ReverseProxy.Model;

namespace TuneGateway.Tests.Server;

/// <summary>The routing rules of the gateway's load-balancing policy, on a pool of reported workers.</summary>
public sealed class AdapterAffinityPolicyTests
{
    private readonly WorkerRegistry _registry = new(new GatewayOptions());
    private readonly List<DestinationState> _destinations = [];

    private DestinationState Worker(string name, string baseModel = "base", string[]? resident = null, string[]? loaded = null,
        int outstanding = 0, int queue = 0, int freeSlots = 4, int slots = 2)
    {
        string url = $"http://{name}:8001";
        _registry.Report(new WorkerState
        {
            WorkerId = name, Url = url, BaseModel = baseModel, Ready = true, Slots = slots, QueueDepth = queue, FreeAdapterSlots = freeSlots, MaxLoras = 4,
            ResidentAdapters = resident ?? [], LoadedAdapters = [.. resident ?? [], .. loaded ?? []],
        });
        var destination = new DestinationState(WorkerRegistry.Normalize(url)) { ConcurrentRequestCount = outstanding };
        _destinations.Add(destination);
        return destination;
    }

    private string Pick(string model, string? adapter, int maxWorkers = 2, string? baseModel = "base")
    {
        var context = new DefaultHttpContext();
        context.Features.Set(new GatewayRoute { RequestedModel = model, Model = model, Adapter = adapter, BaseModel = baseModel });
        var policy = new AdapterAffinityPolicy(_registry, new GatewayOptions { AdapterMaxWorkers = maxWorkers });
        return new Uri(policy.PickDestination(context, new ClusterState("workers"), _destinations)!.DestinationId).Host;
    }

    [Fact]
    public void ResidentAdapterWinsOverAnIdleWorker()
    {
        Worker("a", resident: ["bot"], outstanding: 1);
        Worker("b");
        Assert.Equal("a", Pick("bot", "bot"));
    }

    [Fact]
    public void WithoutResidencyAFreeAdapterSlotThenFewestRequestsDecide()
    {
        Worker("a", freeSlots: 0);
        Worker("b", outstanding: 1);
        Worker("c", outstanding: 3);
        Assert.Equal("b", Pick("bot", "bot"));
        // The pick is remembered: the next request follows it before any report says so.
        _destinations[2].ConcurrentRequestCount = 0; // c is now the least loaded, yet b keeps the adapter
        Assert.Equal("b", Pick("bot", "bot"));
    }

    [Fact]
    public void ABusyAdapterSpreadsUpToTheCapThenOnlyWhenOverloaded()
    {
        Worker("a", resident: ["bot"], outstanding: 2);          // busy: 2 slots, 2 outstanding
        Worker("b");
        Assert.Equal("b", Pick("bot", "bot", maxWorkers: 2));  // below the cap: spread
        _registry.Prune(TimeSpan.FromHours(1), TimeSpan.Zero);  // forget that routing decision

        Assert.Equal("a", Pick("bot", "bot", maxWorkers: 1));  // at the cap, busy but not overloaded: stay
        _registry.Prune(TimeSpan.FromHours(1), TimeSpan.Zero);

        _destinations.Clear();
        Worker("a", resident: ["bot"], outstanding: 2, queue: 3); // overloaded: requests waiting
        Worker("b");
        Assert.Equal("b", Pick("bot", "bot", maxWorkers: 1));
    }

    [Fact]
    public void OnlyWorkersOfTheRequestedBaseAreConsidered()
    {
        Worker("a", baseModel: "other", outstanding: 0);
        Worker("b", baseModel: "base", outstanding: 5);
        Assert.Equal("b", Pick("base", null));
        Assert.Equal("a", Pick("other", null));
        Assert.Equal("b", Pick("bot", "bot", baseModel: "base"));
    }
}
