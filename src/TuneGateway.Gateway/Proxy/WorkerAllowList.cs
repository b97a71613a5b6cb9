using System.Net;

namespace TuneGateway.Gateway.Proxy;

/// <summary>
/// Where registered workers may be (<see cref="GatewayOptions.WorkerAllowList"/>). An IP literal
/// in a worker's URL matches a CIDR; a host name matches a name pattern (<c>*.</c> for any
/// subdomain); a URL prefix matches scheme, host, port and the start of the path. Names are taken
/// as given, not resolved: allowing a name trusts whoever controls its DNS.
/// </summary>
public sealed class WorkerAllowList
{
    private readonly List<IPNetwork> _networks = [];
    private readonly List<string> _hosts = [];
    private readonly List<Uri> _prefixes = [];

    /// <exception cref="ArgumentException">An entry is none of a CIDR, a host name or an http(s) URL.</exception>
    public WorkerAllowList(IEnumerable<string> entries)
    {
        foreach (string raw in entries)
        {
            string entry = raw.Trim();
            if (entry.Length == 0) continue;
            if (IPNetwork.TryParse(entry, out var network)) _networks.Add(network);
            else if (IPAddress.TryParse(entry, out var address)) _networks.Add(new IPNetwork(address, address.GetAddressBytes().Length * 8));
            else if (entry.Contains("://", StringComparison.Ordinal))
                _prefixes.Add(new Uri(WorkerRegistry.TryNormalize(entry) ?? throw new ArgumentException($"Worker allow-list entry '{entry}' is not an http(s) URL.")));
            else if (Uri.CheckHostName(entry.StartsWith("*.", StringComparison.Ordinal) ? entry[2..] : entry) == UriHostNameType.Dns) _hosts.Add(entry.ToLowerInvariant());
            else throw new ArgumentException($"Worker allow-list entry '{entry}' is not a CIDR, an IP, a host name or an http(s) URL.");
        }
    }

    /// <summary>True when nothing is listed: workers may register from anywhere.</summary>
    public bool AllowsAll => _networks.Count + _hosts.Count + _prefixes.Count == 0;

    /// <summary>Whether a worker may register at <paramref name="normalizedUrl"/> (see <see cref="WorkerRegistry.Normalize"/>).</summary>
    public bool Allows(string normalizedUrl)
    {
        if (AllowsAll) return true;
        var uri = new Uri(normalizedUrl);
        if (IPAddress.TryParse(uri.Host.Trim('[', ']'), out var address))
        {
            if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
            if (_networks.Any(n => n.Contains(address))) return true;
        }
        else if (_hosts.Any(h => HostMatches(h, uri.Host.ToLowerInvariant())))
        {
            return true;
        }
        return _prefixes.Any(p => p.Scheme == uri.Scheme && p.Host.Equals(uri.Host, StringComparison.OrdinalIgnoreCase) && p.Port == uri.Port
            && (uri.AbsolutePath == p.AbsolutePath || uri.AbsolutePath.StartsWith(p.AbsolutePath.TrimEnd('/') + "/", StringComparison.Ordinal)));
    }

    private static bool HostMatches(string pattern, string host) =>
        pattern.StartsWith("*.", StringComparison.Ordinal) ? host.EndsWith(pattern[1..], StringComparison.Ordinal) && host.Length > pattern.Length - 1 : host == pattern;
}
