namespace TuneGateway.Cli;

/// <summary>
/// The exit codes of <c>tunegw</c>, for scripts (README, "Exit codes"). Every command returns one of
/// these; the operator commands (<c>adapters</c>, <c>pipelines</c>, <c>approvals</c>) use all of them.
/// </summary>
public enum CliExitCode
{
    /// <summary>Done.</summary>
    Ok = 0,

    /// <summary>The server understood the request and refused it (a 4xx other than 401/403: unknown adapter, conflict, invalid field).</summary>
    Refused = 1,

    /// <summary>The command line or a local input is wrong (unknown flag, missing argument, unreadable file): nothing was sent.</summary>
    Usage = 2,

    /// <summary>The server could not be reached (connection refused, DNS, timeout).</summary>
    Unreachable = 3,

    /// <summary>The server refused the key: missing or unknown (401), or its role may not do this (403).</summary>
    Auth = 4,

    /// <summary>The server failed (5xx) or answered with something that is not the API's JSON.</summary>
    ServerError = 5,

    /// <summary>Interrupted (Ctrl+C), as shells report SIGINT.</summary>
    Cancelled = 130,
}
