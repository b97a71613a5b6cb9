using System.Text;
using Microsoft.Extensions.Options;

namespace TuneGateway.Storage;

/// <summary>
/// The privacy rules shared by the traffic log and the feedback service: per-key opt-out, sampling and
/// redaction.
/// </summary>
public sealed class TrafficPrivacyPolicy
{
    private readonly HashSet<string> _optedOut;
    private readonly double _sampleRate;

    /// <summary>Builds the policy from options.</summary>
    public TrafficPrivacyPolicy(IOptions<TrafficLogOptions> options)
    {
        var value = options.Value;
        _optedOut = new HashSet<string>(value.OptOutApiKeyIds, StringComparer.Ordinal);
        _sampleRate = value.SampleRate;
        Redactor = new Redactor(value.Redaction);
    }

    /// <summary>The redactor in use.</summary>
    public Redactor Redactor { get; }

    /// <summary>Whether traffic and feedback from this API key must not be logged.</summary>
    public bool IsOptedOut(string? apiKeyId) => apiKeyId is not null && _optedOut.Contains(apiKeyId);

    /// <summary>Whether the request with this completion id is in the sample.</summary>
    public bool IsSampled(string id) => TrafficSampler.IsSampled(id, _sampleRate);

    /// <summary>
    /// The entry as it may be stored: free text (prompt, completion, error, user) redacted and every
    /// string made valid UTF-16 (lone surrogates become U+FFFD) so that it serialises everywhere.
    /// </summary>
    public TrafficEntry Prepare(TrafficEntry entry) => entry with
    {
        Id = Sanitize(entry.Id)!,
        RequestId = Sanitize(entry.RequestId),
        ApiKeyId = Sanitize(entry.ApiKeyId),
        RequestedModel = Sanitize(entry.RequestedModel),
        Adapter = Sanitize(entry.Adapter),
        AdapterVersion = Sanitize(entry.AdapterVersion),
        Arm = Sanitize(entry.Arm),
        FinishReason = Sanitize(entry.FinishReason),
        User = RedactText(entry.User),
        Prompt = RedactText(entry.Prompt),
        Completion = RedactText(entry.Completion),
        Error = RedactText(entry.Error),
    };

    /// <summary>Sanitises and redacts free text.</summary>
    public string? RedactText(string? text) => Redactor.Redact(Sanitize(text));

    /// <summary>Replaces unpaired UTF-16 surrogates with U+FFFD; returns the same instance when there are none.</summary>
    public static string? Sanitize(string? text)
    {
        if (text is null || text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') < 0)
        {
            return text;
        }

        StringBuilder? builder = null;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                builder?.Append(c).Append(text[i + 1]);
                i++;
            }
            else if (char.IsSurrogate(c))
            {
                builder ??= new StringBuilder(text.Length).Append(text, 0, i);
                builder.Append('\uFFFD');
            }
            else
            {
                builder?.Append(c);
            }
        }

        return builder?.ToString() ?? text;
    }
}
