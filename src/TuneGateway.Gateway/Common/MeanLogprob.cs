using TuneGateway.Storage;
using System.Globalization;

namespace TuneGateway.Gateway.Common;

/// <summary>
/// How a worker reports the mean log-probability of the tokens it generated (a drift signal for the
/// traffic log) without changing OpenAI's response shape: a response header on JSON answers, and an
/// extension field on the last chunk of a stream. OpenAI clients ignore both; the gateway's traffic
/// log reads either.
/// </summary>
public static class MeanLogprob
{
    /// <summary>Response header of a non-streamed answer.</summary>
    public const string Header = WireHeaders.MeanLogprob;

    /// <summary>Top-level field of the last data chunk of a stream.</summary>
    public const string StreamField = "tunegw_mean_logprob";

    /// <summary>The header value: the shortest text that parses back to the same double.</summary>
    public static string Format(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>Parses a header value; null when absent, malformed or not finite.</summary>
    public static double? Parse(string? text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) && double.IsFinite(value) ? value : null;
}
