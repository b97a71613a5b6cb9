using System.CommandLine;
using TuneGateway.Gateway.Proxy;

namespace TuneGateway.Cli.Commands;

/// <summary>
/// The traffic log's options of <c>serve</c> and <c>gateway</c>. Everything else about it (redaction
/// rules, opt-out key ids, bounds, retention) is configuration, section <c>TuneGateway:TrafficLog</c>.
/// </summary>
/// <param name="defaultDataDirectory">Where the embedded store lives when no flag or configuration says (null: no embedded store by default).</param>
internal sealed class TrafficOptionsBinder(string? defaultDataDirectory)
{
    public Option<string?> Redis { get; } = new("--redis")
    {
        Description = "StackExchange.Redis connection string (host:port[,password=...,ssl=true]) for the traffic log and feedback; one connection shared by the process.",
    };
    public Option<string?> DataDirectory { get; } = new("--data-dir")
    {
        Description = defaultDataDirectory is null
            ? "Directory of the embedded traffic store when there is no --redis (and of the spill during Redis outages)."
            : "Directory of the embedded traffic store when there is no --redis (and of the spill during Redis outages). Default: ./data.",
    };
    public Option<double?> SampleRate { get; } = new("--traffic-sample-rate") { Description = "Fraction of requests logged, 0 to 1 (default 1, or TuneGateway:TrafficLog:SampleRate)." };
    public Option<bool> Disabled { get; } = new("--no-traffic-log") { Description = "Log no traffic (feedback is then accepted but not stored)." };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { Redis, DataDirectory, SampleRate, Disabled }) command.Options.Add(option);
    }

    public TrafficLogSettings Bind(ParseResult parse)
    {
        double? rate = parse.GetValue(SampleRate);
        if (rate is { } r && (double.IsNaN(r) || r is < 0 or > 1)) throw new ArgumentException("--traffic-sample-rate must be between 0 and 1.");
        return new TrafficLogSettings
        {
            Enabled = !parse.GetValue(Disabled),
            RedisConnectionString = parse.GetValue(Redis),
            DataDirectory = parse.GetValue(DataDirectory),
            DefaultDataDirectory = defaultDataDirectory,
            SampleRate = rate,
        };
    }
}
