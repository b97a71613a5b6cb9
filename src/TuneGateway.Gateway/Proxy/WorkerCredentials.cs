using System.Net.Http.Headers;
using TuneGateway.Gateway.Auth;

namespace TuneGateway.Gateway.Proxy;

/// <summary>
/// The one place that decides what credential a request from the gateway to a worker carries,
/// by how the worker joined (<see cref="WorkerTrust"/>): serve's in-process worker gets serve's
/// internal hop key; configured workers and workers registered with the worker credential get the
/// gateway's worker key (or, without one, the client's own key); a worker that registered without
/// proving anything gets no credential at all, neither the gateway's nor the client's.
/// </summary>
public sealed class WorkerCredentials(GatewayOptions options, InternalHop? hop = null)
{
    /// <summary>Sets the Authorization of a request to <paramref name="worker"/>; <paramref name="clientAuthorization"/> is forwarded only where allowed.</summary>
    public void Apply(HttpRequestHeaders headers, WorkerEntry? worker, string? clientAuthorization, string? clientApiKey)
    {
        headers.Remove("X-Api-Key");
        headers.Authorization = null;
        string? key = KeyFor(worker?.Trust ?? WorkerTrust.Unverified);
        if (key is not null)
        {
            headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }
        else if (ForwardsClientKey(worker?.Trust ?? WorkerTrust.Unverified))
        {
            if (clientAuthorization is not null) headers.TryAddWithoutValidation("Authorization", clientAuthorization);
            if (clientApiKey is not null) headers.TryAddWithoutValidation("X-Api-Key", clientApiKey);
        }
    }

    /// <summary>The gateway's own key for <paramref name="trust"/>, or null.</summary>
    public string? KeyFor(WorkerTrust trust) => trust switch
    {
        WorkerTrust.InProcess => hop?.Key,
        WorkerTrust.Configured or WorkerTrust.Registered => options.WorkerKey,
        _ => null,
    };

    private bool ForwardsClientKey(WorkerTrust trust) => trust is WorkerTrust.Configured or WorkerTrust.Registered && options.WorkerKey is null;
}
