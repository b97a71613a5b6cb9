using System.Net;
using System.Diagnostics;

namespace TuneGateway.Cli.Bench;

/// <summary>What the HTTP benchmarks share: readiness polling, the served model id, percentiles.</summary>
internal static class BenchHttp
{
    /// <summary>The p-quantile (nearest rank) of sorted values.</summary>
    public static double Percentile(double[] sorted, double p) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];

    /// <summary>Polls <paramref name="url"/> until it answers 2xx (two minutes at most).</summary>
    public static async Task WaitAsync(HttpClient http, string url, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var response = await http.GetAsync(url, cancellationToken);
                if (response.IsSuccessStatusCode) return;
            }
            catch (HttpRequestException)
            {
            }
            if (deadline.Elapsed > TimeSpan.FromMinutes(2)) throw new TimeoutException($"{url} did not become ready.");
            await Task.Delay(100, cancellationToken);
        }
    }

    /// <summary>The first model id a server lists.</summary>
    public static async Task<string> ModelIdAsync(HttpClient http, string baseUrl, CancellationToken cancellationToken)
    {
        using var document = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync(baseUrl + "/v1/models", cancellationToken));
        return document.RootElement.GetProperty("data")[0].GetProperty("id").GetString()!;
    }

    /// <summary>
    /// <paramref name="requests"/> completions with <paramref name="body"/> from <paramref name="clients"/> concurrent
    /// closed-loop clients: each request's latency in ms (in request order, unsorted) and the wall time in seconds.
    /// </summary>
    public static async Task<(double[] Latencies, double Seconds)> MeasureAsync(HttpClient http, string baseUrl, byte[] body, int clients, int requests,
        CancellationToken cancellationToken)
    {
        var latencies = new double[requests];
        int next = -1;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < requests)
            {
                long start = Stopwatch.GetTimestamp();
                using var content = new ByteArrayContent(body);
                content.Headers.ContentType = new("application/json");
                using var response = await http.PostAsync(baseUrl + "/v1/completions", content, cancellationToken);
                await response.Content.ReadAsByteArrayAsync(cancellationToken);
                if (response.StatusCode != HttpStatusCode.OK) throw new InvalidOperationException($"{baseUrl}: HTTP {(int)response.StatusCode}");
                latencies[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }
        }));
        return (latencies, clock.Elapsed.TotalSeconds);
    }
}
