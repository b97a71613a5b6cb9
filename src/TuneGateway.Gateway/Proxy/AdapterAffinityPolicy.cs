using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.LoadBalancing;
using Yarp.ReverseProxy.Model;

namespace TuneGateway.Gateway.Proxy;

/// <summary>What a proxied request asks for, resolved by the gateway before load balancing.</summary>
public sealed class GatewayRoute
{
    /// <summary>The <c>model</c> the client sent (an alias, an adapter version, or a base model).</summary>
    public required string RequestedModel { get; init; }
    /// <summary>The model forwarded to the worker (the alias's version for this request, else the requested one).</summary>
    public required string Model { get; init; }
    /// <summary>The adapter to run, or null for the base model.</summary>
    public string? Adapter { get; init; }
    /// <summary>The base model the request needs, when the gateway knows it.</summary>
    public string? BaseModel { get; init; }
    /// <summary>The alias the client called, when it was one (then <see cref="Model"/> is the arm).</summary>
    public string? Alias { get; init; }
    public string? User { get; init; }
    public bool Stream { get; init; }
}

/// <summary>
/// YARP load-balancing policy: among the workers serving the requested base model, prefer those
/// with the adapter already resident (or just routed there), then those with a free adapter slot,
/// then the fewest outstanding requests. An adapter stays on the workers that have it while one of
/// them has a free batch slot; when all are busy it spreads to another worker, up to
/// <see cref="GatewayOptions.AdapterMaxWorkers"/> workers, and beyond that only when all of its
/// workers also have requests waiting in their queues.
/// </summary>
public sealed class AdapterAffinityPolicy(WorkerRegistry registry, GatewayOptions options) : ILoadBalancingPolicy
{
    public const string PolicyName = "TuneGatewayAdapterAffinity";

    /// <summary>How long a routing decision counts as residency before the worker's report confirms it.</summary>
    internal static readonly TimeSpan RouteWindow = TimeSpan.FromSeconds(5);

    public string Name => PolicyName;

    private readonly record struct Candidate(DestinationState Destination, WorkerEntry? Entry)
    {
        public int Load => Destination.ConcurrentRequestCount;
        public int Slots => Math.Max(1, Entry?.State?.Slots ?? 1);
        /// <summary>A new request would wait for a batch slot.</summary>
        public bool Busy => Load >= Slots;
        /// <summary>Busy, and the worker reports requests already waiting.</summary>
        public bool Overloaded => Busy && (Entry?.State?.QueueDepth ?? 0) > 0;
        public bool FreeAdapterSlot => Entry?.State is not { } s || s.FreeAdapterSlots > 0;
    }

    public DestinationState? PickDestination(HttpContext context, ClusterState cluster, IReadOnlyList<DestinationState> availableDestinations)
    {
        if (availableDestinations.Count == 0) return null;
        var target = context.Features.Get<GatewayRoute>();
        var all = availableDestinations.Select(d => new Candidate(d, registry.Find(d.DestinationId))).ToList();
        var serving = Serving(all, target);
        if (target?.Adapter is not { } adapter) return LeastLoaded(serving).Destination;

        // Workers with the adapter on the device (or just sent it), else with it in memory or registered.
        var holding = serving.Where(c => Resident(c, adapter)).ToList();
        if (holding.Count == 0) holding = serving.Where(c => c.Entry?.State?.LoadedAdapters.Contains(adapter) == true).ToList();
        Candidate pick;
        if (holding.Count == 0)
        {
            var withSlot = serving.Where(c => c.FreeAdapterSlot).ToList();
            pick = LeastLoaded(withSlot.Count > 0 ? withSlot : serving);
        }
        else
        {
            pick = LeastLoaded(holding);
            if (pick.Busy && (holding.Count < options.AdapterMaxWorkers || holding.All(c => c.Overloaded)))
            {
                var others = serving.Where(c => !holding.Contains(c)).ToList();
                var withSlot = others.Where(c => c.FreeAdapterSlot).ToList();
                if (others.Count > 0)
                {
                    var spread = LeastLoaded(withSlot.Count > 0 ? withSlot : others);
                    if (spread.Load < pick.Load) pick = spread;
                }
            }
        }
        pick.Entry?.NoteRouted(adapter);
        return pick.Destination;
    }

    /// <summary>Workers that serve the request's base model; if none is known to, those of unknown state; else all.</summary>
    private static List<Candidate> Serving(List<Candidate> all, GatewayRoute? target)
    {
        if (target is null) return all;
        var known = all.Where(c => c.Entry is { IsRoutable: true } e && Serves(e.State!, target)).ToList();
        if (known.Count > 0) return known;
        var unknown = all.Where(c => c.Entry?.State is null).ToList();
        return unknown.Count > 0 ? unknown : all;
    }

    private static bool Serves(Common.WorkerState state, GatewayRoute target)
    {
        if (target.Adapter is null) return state.BaseModel == target.Model;
        if (target.BaseModel is not null) return state.BaseModel == target.BaseModel;
        return true;
    }

    private static bool Resident(Candidate c, string adapter) =>
        c.Entry is { } e && (e.State?.ResidentAdapters.Contains(adapter) == true || e.RecentlyRouted(adapter, RouteWindow));

    /// <summary>Fewest outstanding requests; ties go to the shorter reported queue, then to chance.</summary>
    private static Candidate LeastLoaded(List<Candidate> candidates)
    {
        Candidate best = candidates[0];
        int ties = 1;
        for (int i = 1; i < candidates.Count; i++)
        {
            var c = candidates[i];
            int order = Compare(c, best);
            if (order < 0)
            {
                best = c;
                ties = 1;
            }
            else if (order == 0 && Random.Shared.Next(++ties) == 0)
            {
                best = c;
            }
        }
        return best;

        static int Compare(Candidate a, Candidate b)
        {
            int load = a.Load.CompareTo(b.Load);
            return load != 0 ? load : (a.Entry?.State?.QueueDepth ?? 0).CompareTo(b.Entry?.State?.QueueDepth ?? 0);
        }
    }
}
