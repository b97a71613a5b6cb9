using TuneGateway.Storage;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace TuneGateway.Controller.Pipelines;

/// <summary>
/// Greedy completions through the gateway's OpenAI API, so evaluation runs on the workers (their
/// GPUs, their on-demand adapter loading) like real traffic. Requests are marked as evaluation
/// (<c>X-TuneGateway-Evaluation: true</c>) so the traffic log leaves them out.
/// </summary>
public sealed class GatewayCompletionClient(HttpClient http, string? apiKey) : ICompletionClient
{
    public const string EvaluationHeader = WireHeaders.Evaluation;

    public async Task<string> CompleteAsync(string model, string prompt, int maxTokens, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions")
        {
            Content = JsonContent.Create(new { model, prompt, max_tokens = maxTokens, temperature = 0 }),
        };
        request.Headers.Add(EvaluationHeader, "true");
        if (apiKey is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        using var response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        string body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
            throw new HttpRequestException($"Evaluation request for {model} failed with {(int)response.StatusCode}: {body}");
        using var doc = JsonDocument.Parse(body);
        return doc.RootElement.GetProperty("choices")[0].GetProperty("text").GetString() ?? "";
    }
}
