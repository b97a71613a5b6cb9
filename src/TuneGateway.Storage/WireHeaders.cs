namespace TuneGateway.Storage;

/// <summary>
/// The HTTP headers TuneGateway's processes and clients exchange, in one place: the gateway, the
/// workers, the controller's evaluation client and the demo all name them from here.
/// </summary>
public static class WireHeaders
{
    /// <summary>Request: the end user, for sticky A/B assignment (also the body's <c>user</c>).</summary>
    public const string User = "X-TuneGateway-User";
    /// <summary>Request: <c>true</c> marks an offline evaluation, left out of the traffic log (mlops, operator and admin keys only).</summary>
    public const string Evaluation = "X-TuneGateway-Evaluation";
    /// <summary>Response: the concrete model that served the request.</summary>
    public const string Model = "X-TuneGateway-Model";
    /// <summary>Response: the alias the request named, when it named one.</summary>
    public const string Alias = "X-TuneGateway-Alias";
    /// <summary>Response: the alias's arm (the concrete version) the request was assigned to.</summary>
    public const string Arm = "X-TuneGateway-Arm";
    /// <summary>Worker response: the mean log-probability of the generated tokens, for the traffic log.</summary>
    public const string MeanLogprob = "X-TuneGateway-Mean-Logprob";
    /// <summary>Response, only with <c>--expose-worker-header</c>: the serving worker's URL (debugging).</summary>
    public const string Worker = "X-TuneGateway-Worker";
}
