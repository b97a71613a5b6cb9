using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;

namespace TuneGateway.Storage;

/// <summary>
/// Configuration of the traffic log, the feedback store and the privacy policy applied to both.
/// </summary>
public sealed class TrafficLogOptions
{
    /// <summary>Conventional configuration section name.</summary>
    public const string SectionName = "TrafficLog";

    /// <summary>
    /// StackExchange.Redis configuration string. When set, the log lives in Redis; otherwise in files under
    /// <see cref="DataDirectory"/>.
    /// </summary>
    public string? RedisConnectionString { get; set; }

    /// <summary>Root directory of the embedded store (and of the default spill directory).</summary>
    public string DataDirectory { get; set; } = "data";

    /// <summary>Prefix of every Redis key the store uses (<c>{prefix}:traffic:{adapter}</c>, …).</summary>
    public string KeyPrefix { get; set; } = "tunegw";

    /// <summary>Entries kept per adapter log; <see langword="null"/> for no count limit.</summary>
    public long? MaxEntriesPerStream { get; set; } = 100_000;

    /// <summary>How long entries (and their feedback) are kept; <see langword="null"/> for no age limit.</summary>
    public TimeSpan? MaxAge { get; set; } = TimeSpan.FromDays(30);

    /// <summary>How often the writer trims every log exactly (appends already trim approximately).</summary>
    public TimeSpan TrimInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Capacity of the in-memory queue between the request path and the writer.</summary>
    public int QueueCapacity { get; set; } = 10_000;

    /// <summary>Most entries the writer sends to the store in one pipelined batch.</summary>
    public int BatchSize { get; set; } = 256;

    /// <summary>How long the writer waits for a batch before treating the store as unavailable and spilling it.</summary>
    public TimeSpan WriteTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Directory of the spill file segments; defaults to <c>{DataDirectory}/traffic-spill</c>.</summary>
    public string? SpillDirectory { get; set; }

    /// <summary>Bound on the bytes waiting in the spill; entries beyond it are dropped and counted.</summary>
    public long SpillMaxBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>Size at which the embedded store starts a new segment file.</summary>
    public long SegmentMaxBytes { get; set; } = 4L * 1024 * 1024;

    /// <summary>How long feedback for a request that is still queued waits for the request to be written.</summary>
    public TimeSpan FeedbackPendingWait { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>What is redacted from text before it is stored.</summary>
    public RedactionOptions Redaction { get; set; } = new();

    /// <summary>API key ids whose traffic and feedback are not logged.</summary>
    public List<string> OptOutApiKeyIds { get; set; } = [];

    /// <summary>
    /// Fraction of requests logged, 0…1. The decision is a hash of the completion id, so a request and its
    /// feedback are always sampled alike, in every process.
    /// </summary>
    public double SampleRate { get; set; } = 1.0;

    /// <summary>The spill directory in effect.</summary>
    public string EffectiveSpillDirectory => SpillDirectory ?? Path.Combine(DataDirectory, "traffic-spill");

    /// <summary>Whether the Redis store is configured.</summary>
    public bool UsesRedis => !string.IsNullOrWhiteSpace(RedisConnectionString);
}

/// <summary>Redaction applied to prompts, completions, errors, user ids, corrections and comments.</summary>
public sealed class RedactionOptions
{
    /// <summary>Master switch.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Replace e-mail addresses with <c>[EMAIL]</c>.</summary>
    public bool Emails { get; set; } = true;

    /// <summary>Replace phone numbers with <c>[PHONE]</c>.</summary>
    public bool PhoneNumbers { get; set; } = true;

    /// <summary>Replace card-like numbers that pass the Luhn check with <c>[CARD]</c>.</summary>
    public bool CardNumbers { get; set; } = true;

    /// <summary>Further patterns, applied after the built-in ones in order.</summary>
    public List<RedactionRule> Rules { get; set; } = [];

    /// <summary>Time limit for one pattern on one text; when exceeded the whole text is replaced.</summary>
    public TimeSpan MatchTimeout { get; set; } = TimeSpan.FromMilliseconds(500);
}

/// <summary>A custom redaction pattern.</summary>
public sealed class RedactionRule
{
    /// <summary>A .NET regular expression.</summary>
    public string Pattern { get; set; } = "";

    /// <summary>Text that replaces each match.</summary>
    public string Placeholder { get; set; } = "[REDACTED]";

    /// <summary>Whether the pattern ignores case.</summary>
    public bool IgnoreCase { get; set; }
}

/// <summary>Validates <see cref="TrafficLogOptions"/> at startup.</summary>
internal sealed class TrafficLogOptionsValidator : IValidateOptions<TrafficLogOptions>
{
    public ValidateOptionsResult Validate(string? name, TrafficLogOptions options)
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(options.KeyPrefix))
        {
            errors.Add("KeyPrefix must not be empty.");
        }

        if (!options.UsesRedis && string.IsNullOrWhiteSpace(options.DataDirectory))
        {
            errors.Add("DataDirectory is required when no RedisConnectionString is given.");
        }

        if (options.MaxEntriesPerStream is <= 0)
        {
            errors.Add("MaxEntriesPerStream must be positive (or null for no limit).");
        }

        if (options.MaxAge is { } age && age <= TimeSpan.Zero)
        {
            errors.Add("MaxAge must be positive (or null for no limit).");
        }

        if (options.TrimInterval <= TimeSpan.Zero)
        {
            errors.Add("TrimInterval must be positive.");
        }

        if (options.QueueCapacity <= 0 || options.BatchSize <= 0)
        {
            errors.Add("QueueCapacity and BatchSize must be positive.");
        }

        if (options.WriteTimeout <= TimeSpan.Zero)
        {
            errors.Add("WriteTimeout must be positive.");
        }

        if (options.SpillMaxBytes < 0 || options.SegmentMaxBytes <= 0)
        {
            errors.Add("SpillMaxBytes must not be negative and SegmentMaxBytes must be positive.");
        }

        if (double.IsNaN(options.SampleRate) || options.SampleRate is < 0 or > 1)
        {
            errors.Add("SampleRate must be between 0 and 1.");
        }

        foreach (var rule in options.Redaction.Rules)
        {
            try
            {
                _ = new Regex(rule.Pattern, RegexOptions.CultureInvariant);
            }
            catch (ArgumentException ex)
            {
                errors.Add($"Redaction pattern '{rule.Pattern}' is invalid: {ex.Message}");
            }
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
