using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace TuneGateway.Gateway.Auth;

/// <summary>
/// The roles an API key can hold. Each role of the public API (<see cref="Api"/>) includes the rights
/// of inference; <see cref="Worker"/> is apart: it registers workers and can do nothing else.
/// </summary>
public static class Roles
{
    /// <summary>Call the inference endpoints (completions, chat, models), possibly limited to some models.</summary>
    public const string Inference = "inference";
    /// <summary>Inference, and manage aliases and A/B weights.</summary>
    public const string Mlops = "mlops";
    /// <summary>Inference, aliases, and run the fleet: list workers, promote, roll back, approve.</summary>
    public const string Operator = "operator";
    /// <summary>Everything on the public API, including loading and unloading adapters.</summary>
    public const string Admin = "admin";
    /// <summary>
    /// Register a worker with the gateway and withdraw it, nothing more: a worker that registers
    /// receives traffic, so this is its own secret rather than a right of any role above.
    /// </summary>
    public const string Worker = "worker";

    /// <summary>The roles of the public API: each may call the inference endpoints.</summary>
    public static readonly IReadOnlyList<string> Api = [Inference, Mlops, Operator, Admin];
    public static readonly IReadOnlyList<string> All = [.. Api, Worker];
}

/// <summary>One API key as configured: the secret (plain or as its SHA-256), its roles, models and rate limit.</summary>
public sealed record ApiKeyEntry
{
    /// <summary>A name for logs and metrics (never the secret).</summary>
    public string? Name { get; init; }
    /// <summary>The key itself; hashed when loaded, never kept.</summary>
    public string? Key { get; init; }
    /// <summary>Hex SHA-256 of the key, for files that should not hold the secret (<c>printf %s KEY | sha256sum</c>).</summary>
    public string? Sha256 { get; init; }
    public IReadOnlyList<string> Roles { get; init; } = [Auth.Roles.Inference];
    /// <summary>Models an inference key may call (names or aliases; <c>name</c> also allows <c>name@version</c>; a trailing * matches a prefix). Empty: all.</summary>
    public IReadOnlyList<string> Models { get; init; } = [];
    /// <summary>Requests per minute on the inference API; null for no limit.</summary>
    public int? RequestsPerMinute { get; init; }
    /// <summary>Requests allowed in a burst (default: one minute's worth, at least 1).</summary>
    public int? Burst { get; init; }
}

/// <summary>An authenticated key: what the rest of the server knows of it.</summary>
public sealed record ApiKeyIdentity(string Name, IReadOnlySet<string> Roles, IReadOnlyList<string> Models, int? RequestsPerMinute, int? Burst)
{
    public bool MayUse(string model) => Models.Count == 0 || Models.Any(pattern => ModelPatternMatches(pattern, model));

    internal static bool ModelPatternMatches(string pattern, string model)
    {
        if (pattern.EndsWith('*')) return model.StartsWith(pattern[..^1], StringComparison.Ordinal);
        if (pattern == model) return true;
        int at = model.IndexOf('@', StringComparison.Ordinal);
        return at > 0 && model[..at] == pattern;
    }
}

/// <summary>
/// The configured API keys, by SHA-256 of the secret, so the secrets themselves are never kept in
/// memory. Empty means open mode: every request is accepted (local use).
/// </summary>
public sealed class ApiKeyStore
{
    private readonly Dictionary<string, ApiKeyIdentity> _byHash;

    public ApiKeyStore(IEnumerable<ApiKeyEntry> entries)
    {
        _byHash = new(StringComparer.Ordinal);
        int index = 0;
        foreach (var entry in entries)
        {
            index++;
            string name = entry.Name ?? $"key-{index}";
            string hash = entry.Key is { Length: > 0 } key ? Hash(key)
                : entry.Sha256 is { Length: 64 } h && h.All(Uri.IsHexDigit) ? h.ToLowerInvariant()
                : throw new ArgumentException($"API key '{name}': give 'key' or 'sha256' (64 hex digits).");
            var unknown = entry.Roles.Where(r => !Roles.All.Contains(r)).ToArray();
            if (unknown.Length > 0) throw new ArgumentException($"API key '{name}': unknown role '{unknown[0]}' (expected {string.Join(", ", Roles.All)}).");
            if (entry.Roles.Count == 0) throw new ArgumentException($"API key '{name}': give at least one role.");
            if (entry.RequestsPerMinute is < 1) throw new ArgumentException($"API key '{name}': requests_per_minute must be at least 1.");
            _byHash[hash] = new ApiKeyIdentity(name, entry.Roles.ToHashSet(StringComparer.Ordinal), entry.Models, entry.RequestsPerMinute, entry.Burst);
        }
    }

    /// <summary>True when no key is configured: every request is accepted.</summary>
    public bool IsOpen => _byHash.Count == 0;

    public int Count => _byHash.Count;

    public ApiKeyIdentity? Find(string presentedKey) => _byHash.GetValueOrDefault(Hash(presentedKey));

    /// <summary>True when <paramref name="key"/> is one of the configured keys.</summary>
    public bool Contains(string key) => _byHash.ContainsKey(Hash(key));

    public static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>
    /// Reads keys from a JSON secret file: <c>{"keys": [{"name", "key" | "sha256", "roles", "models", "requests_per_minute", "burst"}]}</c>
    /// or the bare array.
    /// </summary>
    public static IReadOnlyList<ApiKeyEntry> ReadFile(string path)
    {
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            var root = document.RootElement;
            var keys = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("keys", out var k) ? k : root;
            if (keys.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"'{path}': expected {{\"keys\": [...]}} or an array of keys.");
            return keys.Deserialize<List<ApiKeyEntry>>(FileOptions) ?? [];
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"'{path}' is not a valid API key file: {ex.Message}", ex);
        }
    }

    private static readonly JsonSerializerOptions FileOptions = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        PropertyNameCaseInsensitive = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };
}
