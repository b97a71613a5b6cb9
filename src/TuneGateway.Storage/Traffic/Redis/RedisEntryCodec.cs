using System.Globalization;
using StackExchange.Redis;

namespace TuneGateway.Storage;

/// <summary>
/// Maps a <see cref="TrafficEntry"/> to the flat field/value pairs of a Redis stream entry and back, so
/// that entries are readable with plain <c>XRANGE</c>. Absent (null) properties have no field.
/// </summary>
internal static class RedisEntryCodec
{
    public const string Id = "id";
    public const string RequestId = "request_id";
    public const string Timestamp = "timestamp";
    public const string ApiKeyId = "api_key_id";
    public const string User = "user";
    public const string RequestedModel = "requested_model";
    public const string Adapter = "adapter";
    public const string AdapterVersion = "adapter_version";
    public const string Arm = "arm";
    public const string Prompt = "prompt";
    public const string Completion = "completion";
    public const string FinishReason = "finish_reason";
    public const string PromptTokens = "prompt_tokens";
    public const string CompletionTokens = "completion_tokens";
    public const string MeanLogprob = "mean_logprob";
    public const string TimeToFirstTokenMs = "ttft_ms";
    public const string LatencyMs = "latency_ms";
    public const string Status = "status";
    public const string Error = "error";

    /// <summary>Appends the entry's field/value pairs to <paramref name="target"/>.</summary>
    public static void Encode(TrafficEntry entry, List<RedisValue> target)
    {
        Add(target, Id, entry.Id);
        Add(target, RequestId, entry.RequestId);
        Add(target, Timestamp, entry.Timestamp.ToString("O", CultureInfo.InvariantCulture));
        Add(target, ApiKeyId, entry.ApiKeyId);
        Add(target, User, entry.User);
        Add(target, RequestedModel, entry.RequestedModel);
        Add(target, Adapter, entry.Adapter);
        Add(target, AdapterVersion, entry.AdapterVersion);
        Add(target, Arm, entry.Arm);
        Add(target, Prompt, entry.Prompt);
        Add(target, Completion, entry.Completion);
        Add(target, FinishReason, entry.FinishReason);
        Add(target, PromptTokens, entry.PromptTokens?.ToString(CultureInfo.InvariantCulture));
        Add(target, CompletionTokens, entry.CompletionTokens?.ToString(CultureInfo.InvariantCulture));
        Add(target, MeanLogprob, entry.MeanLogprob?.ToString("R", CultureInfo.InvariantCulture));
        Add(target, TimeToFirstTokenMs, entry.TimeToFirstTokenMs?.ToString("R", CultureInfo.InvariantCulture));
        Add(target, LatencyMs, entry.LatencyMs.ToString("R", CultureInfo.InvariantCulture));
        Add(target, Status, entry.Status.ToString(CultureInfo.InvariantCulture));
        Add(target, Error, entry.Error);
    }

    /// <summary>Rebuilds an entry from a stream entry's fields.</summary>
    /// <exception cref="FormatException">A required field is missing or malformed.</exception>
    public static TrafficEntry Decode(NameValueEntry[] fields)
    {
        string? id = null, requestId = null, apiKeyId = null, user = null, requestedModel = null, adapter = null,
            adapterVersion = null, arm = null, prompt = null, completion = null, finishReason = null, error = null;
        DateTimeOffset? timestamp = null;
        int? promptTokens = null, completionTokens = null;
        double? ttft = null, meanLogprob = null;
        double latency = 0;
        var status = 0;
        foreach (var field in fields)
        {
            var value = (string?)field.Value;
            switch ((string?)field.Name)
            {
                case Id: id = value; break;
                case RequestId: requestId = value; break;
                case Timestamp: timestamp = DateTimeOffset.ParseExact(value!, "O", CultureInfo.InvariantCulture, DateTimeStyles.None); break;
                case ApiKeyId: apiKeyId = value; break;
                case User: user = value; break;
                case RequestedModel: requestedModel = value; break;
                case Adapter: adapter = value; break;
                case AdapterVersion: adapterVersion = value; break;
                case Arm: arm = value; break;
                case Prompt: prompt = value; break;
                case Completion: completion = value; break;
                case FinishReason: finishReason = value; break;
                case PromptTokens: promptTokens = int.Parse(value!, CultureInfo.InvariantCulture); break;
                case CompletionTokens: completionTokens = int.Parse(value!, CultureInfo.InvariantCulture); break;
                case MeanLogprob: meanLogprob = double.Parse(value!, CultureInfo.InvariantCulture); break;
                case TimeToFirstTokenMs: ttft = double.Parse(value!, CultureInfo.InvariantCulture); break;
                case LatencyMs: latency = double.Parse(value!, CultureInfo.InvariantCulture); break;
                case Status: status = int.Parse(value!, CultureInfo.InvariantCulture); break;
                case Error: error = value; break;
                default: break; // Fields added by later versions are ignored.
            }
        }

        return new TrafficEntry
        {
            Id = id ?? throw new FormatException("Stream entry has no id field."),
            Timestamp = timestamp ?? throw new FormatException("Stream entry has no timestamp field."),
            RequestId = requestId,
            ApiKeyId = apiKeyId,
            User = user,
            RequestedModel = requestedModel,
            Adapter = adapter,
            AdapterVersion = adapterVersion,
            Arm = arm,
            Prompt = prompt,
            Completion = completion,
            FinishReason = finishReason,
            PromptTokens = promptTokens,
            CompletionTokens = completionTokens,
            MeanLogprob = meanLogprob,
            TimeToFirstTokenMs = ttft,
            LatencyMs = latency,
            Status = status,
            Error = error,
        };
    }

    private static void Add(List<RedisValue> target, string name, string? value)
    {
        if (value is not null)
        {
            target.Add(name);
            target.Add(value);
        }
    }
}
