namespace TuneGateway.Storage.Lifecycle.Embedded;

/// <summary>The embedded leases and claims (one process, so fencing is bookkeeping; the semantics are Redis's).</summary>
internal sealed class FileLeaseManager(LifecycleFile file) : ILeaseManager
{
    public Task<LeaseGrant?> TryAcquireAsync(string name, string owner, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            var now = file.Now;
            if (file.State.Leases.TryGetValue(name, out var held) && held.ExpiresAt > now && held.Owner != owner) return Task.FromResult<LeaseGrant?>(null);
            long token = held is not null && held.Owner == owner && held.ExpiresAt > now ? held.Token : file.State.LeaseTokens.GetValueOrDefault(name) + 1;
            file.State.LeaseTokens[name] = Math.Max(token, file.State.LeaseTokens.GetValueOrDefault(name));
            var grant = new LeaseGrant(name, owner, token, now + ttl);
            file.State.Leases[name] = grant;
            file.Save();
            return Task.FromResult<LeaseGrant?>(grant);
        }
    }

    public Task<bool> RenewAsync(LeaseGrant lease, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            var now = file.Now;
            if (!file.State.Leases.TryGetValue(lease.Name, out var held) || held.Token != lease.Token || held.Owner != lease.Owner || held.ExpiresAt <= now)
                return Task.FromResult(false);
            file.State.Leases[lease.Name] = held with { ExpiresAt = now + ttl };
            file.Save();
            return Task.FromResult(true);
        }
    }

    public Task ReleaseAsync(LeaseGrant lease, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            if (file.State.Leases.TryGetValue(lease.Name, out var held) && held.Token == lease.Token && held.Owner == lease.Owner)
            {
                file.State.Leases.Remove(lease.Name);
                file.Save();
            }
        }
        return Task.CompletedTask;
    }

    public Task<bool> IsCurrentAsync(LeaseGrant lease, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            return Task.FromResult(file.State.Leases.TryGetValue(lease.Name, out var held) && held.Token == lease.Token && held.Owner == lease.Owner
                && held.ExpiresAt > file.Now);
        }
    }

    public Task<bool> TryClaimOnceAsync(string key, string owner, TimeSpan retention, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            var now = file.Now;
            foreach (var expired in file.State.Claims.Where(c => c.Value <= now).Select(c => c.Key).ToArray()) file.State.Claims.Remove(expired);
            if (file.State.Claims.ContainsKey(key)) return Task.FromResult(false);
            file.State.Claims[key] = now + retention;
            file.Save();
            return Task.FromResult(true);
        }
    }
}
