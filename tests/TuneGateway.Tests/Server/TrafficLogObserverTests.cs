using System.Text;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Storage;

namespace TuneGateway.Tests.Server;

/// <summary>How an exchange becomes a log entry, and how the traffic log's options are put together.</summary>
public sealed class TrafficLogObserverTests
{
    private static ProxiedExchange Exchange(string path, string body, string requested, string resolved, string? adapter, string? alias = null) => new()
    {
        RequestId = "trace-1",
        StartedAt = new DateTimeOffset(2025, 3, 14, 12, 0, 0, TimeSpan.Zero),
        Path = path,
        RequestBody = Encoding.UTF8.GetBytes(body),
        ApiKeyName = "team-a",
        User = "u-1",
        RequestedModel = requested,
        ResolvedModel = resolved,
        ResolvedAdapter = adapter,
        Alias = alias,
        StatusCode = 200,
        ResponseId = "cmpl-1",
        TimeToFirstToken = TimeSpan.FromMilliseconds(12.5),
        Duration = TimeSpan.FromMilliseconds(40.25),
        Completions = ["first", "second"],
        FinishReasons = ["stop", "length"],
        PromptTokens = 7,
        CompletionTokens = 3,
        MeanLogprob = -0.5,
    };

    [Fact]
    public void AnAliasedCompletionIsLoggedUnderTheAliasWithItsArmAndVersion()
    {
        var entry = TrafficLogObserver.ToEntry(Exchange("/v1/completions", """{"model":"bot@v2","prompt":"Hi there"}""", "bot", "bot@v2", "bot@v2", alias: "bot"), openMode: false);

        Assert.Equal(("cmpl-1", "trace-1", "team-a", "u-1"), (entry.Id, entry.RequestId, entry.ApiKeyId, entry.User));
        Assert.Equal(("bot", "bot", "v2", "bot@v2"), (entry.RequestedModel, entry.Adapter, entry.AdapterVersion, entry.Arm));
        Assert.Equal(("Hi there", "first", "stop"), (entry.Prompt, entry.Completion, entry.FinishReason));
        Assert.Equal((7, 3, -0.5), (entry.PromptTokens!.Value, entry.CompletionTokens!.Value, entry.MeanLogprob!.Value));
        Assert.Equal((12.5, 40.25, 200), (entry.TimeToFirstTokenMs!.Value, entry.LatencyMs, entry.Status));
        Assert.True(entry.IsValid(out _));
    }

    [Fact]
    public void AnAliasArmWithoutVersionAndADirectAdapterAndTheBaseModel()
    {
        var arm = TrafficLogObserver.ToEntry(Exchange("/v1/completions", """{"prompt":"x"}""", "ab", "shout", "shout", alias: "ab"), openMode: false);
        Assert.Equal(("ab", (string?)null, "shout"), (arm.Adapter, arm.AdapterVersion, arm.Arm));

        var direct = TrafficLogObserver.ToEntry(Exchange("/v1/completions", """{"prompt":"x"}""", "bot@v3", "bot@v3", "bot@v3"), openMode: false);
        Assert.Equal(("bot", "v3", (string?)null), (direct.Adapter, direct.AdapterVersion, direct.Arm));

        var plain = TrafficLogObserver.ToEntry(Exchange("/v1/completions", """{"prompt":"x"}""", "shout", "shout", "shout"), openMode: false);
        Assert.Equal(("shout", (string?)null, (string?)null), (plain.Adapter, plain.AdapterVersion, plain.Arm));

        var baseModel = TrafficLogObserver.ToEntry(Exchange("/v1/completions", """{"prompt":"x"}""", "llama-tiny", "llama-tiny", null), openMode: false);
        Assert.Equal(((string?)null, (string?)null, (string?)null), (baseModel.Adapter, baseModel.AdapterVersion, baseModel.Arm));
        Assert.Equal(TrafficEntry.NoAdapterStream, baseModel.StreamName);
    }

    [Theory]
    [InlineData("/v1/completions", """{"prompt": [1, 2,  3]}""", "[1,2,3]")]
    [InlineData("/v1/completions", """{"prompt": [[1, 2], [3]]}""", "[[1,2],[3]]")]
    [InlineData("/v1/completions", """{"prompt": ["a", "ü \"q\""]}""", """["a","ü \"q\""]""")]
    [InlineData("/v1/completions", """{"prompt": "line 1\nline 2"}""", "line 1\nline 2")]
    [InlineData("/v1/chat/completions", """{"messages": [ {"role": "user", "content": "Grüße <b>&</b>"} ], "prompt": "ignored"}""", """[{"role":"user","content":"Grüße <b>&</b>"}]""")]
    [InlineData("/v1/completions", """{"messages": []}""", null)]
    [InlineData("/v1/chat/completions", "not json", null)]
    public void PromptsAreTextOrCompactJson(string path, string body, string? expected)
    {
        Assert.Equal(expected, TrafficLogObserver.ToEntry(Exchange(path, body, "m", "m", null), openMode: false).Prompt);
    }

    [Fact]
    public void ErrorsGetAGeneratedIdAndOpenModeHasNoKeyId()
    {
        var exchange = Exchange("/v1/completions", "{}", "m", "m", null) with { ResponseId = null, StatusCode = 503, Error = "No healthy worker", Completions = [], FinishReasons = [] };

        var first = TrafficLogObserver.ToEntry(exchange, openMode: true);
        var second = TrafficLogObserver.ToEntry(exchange, openMode: true);

        Assert.StartsWith("err-", first.Id, StringComparison.Ordinal);
        Assert.NotEqual(first.Id, second.Id);
        Assert.Equal((503, "No healthy worker"), (first.Status, first.Error));
        Assert.Null(first.ApiKeyId);
        Assert.Null(first.Completion);
        Assert.Null(first.FinishReason);
        Assert.True(first.IsValid(out _));
    }

    [Fact]
    public void AClientThatLeftIsRecordedAsSuch()
    {
        var entry = TrafficLogObserver.ToEntry(Exchange("/v1/completions", "{}", "m", "m", null) with { ClientAborted = true }, openMode: false);
        Assert.Contains("disconnected", entry.Error, StringComparison.Ordinal);
    }

    private static TrafficLogOptions Resolve(Dictionary<string, string?> configuration, TrafficLogSettings settings, out string? store)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        var config = new ConfigurationBuilder().AddInMemoryCollection(configuration).Build();
        store = services.AddGatewayTrafficLog(config, settings);
        using var provider = services.BuildServiceProvider();
        return provider.GetRequiredService<IOptions<TrafficLogOptions>>().Value;
    }

    [Fact]
    public void ConfigurationSetsThePrivacyRulesAndBoundsAndFlagsWin()
    {
        var configuration = new Dictionary<string, string?>
        {
            ["TuneGateway:TrafficLog:DataDirectory"] = "/srv/from-config",
            ["TuneGateway:TrafficLog:SampleRate"] = "0.25",
            ["TuneGateway:TrafficLog:OptOutApiKeyIds:0"] = "private-team",
            ["TuneGateway:TrafficLog:Redaction:PhoneNumbers"] = "false",
            ["TuneGateway:TrafficLog:Redaction:Rules:0:Pattern"] = "ACME-\\d+",
            ["TuneGateway:TrafficLog:Redaction:Rules:0:Placeholder"] = "[TICKET]",
            ["TuneGateway:TrafficLog:QueueCapacity"] = "500",
            ["TuneGateway:TrafficLog:SpillMaxBytes"] = "1048576",
            ["TuneGateway:TrafficLog:MaxAge"] = "7.00:00:00",
        };

        var fromConfig = Resolve(configuration, new TrafficLogSettings { DefaultDataDirectory = "/srv/default" }, out string? store);
        Assert.Equal("/srv/from-config", fromConfig.DataDirectory);
        Assert.Equal(0.25, fromConfig.SampleRate);
        Assert.Equal(["private-team"], fromConfig.OptOutApiKeyIds);
        Assert.False(fromConfig.Redaction.PhoneNumbers);
        Assert.Equal(("ACME-\\d+", "[TICKET]"), (fromConfig.Redaction.Rules.Single().Pattern, fromConfig.Redaction.Rules.Single().Placeholder));
        Assert.Equal((500, 1048576L, TimeSpan.FromDays(7)), (fromConfig.QueueCapacity, fromConfig.SpillMaxBytes, fromConfig.MaxAge!.Value));
        Assert.Contains("embedded store", store, StringComparison.Ordinal);

        var flags = Resolve(configuration, new TrafficLogSettings { DataDirectory = "/srv/flag", SampleRate = 0.5, RedisConnectionString = "127.0.0.1:1,password=secret" }, out store);
        Assert.Equal(("/srv/flag", 0.5, "127.0.0.1:1,password=secret"), (flags.DataDirectory, flags.SampleRate, flags.RedisConnectionString));
        Assert.Contains("Redis (127.0.0.1:1)", store, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", store, StringComparison.Ordinal);
    }

    [Fact]
    public void TheLogIsOffWithoutAStoreOrWhenDisabled()
    {
        Assert.Equal("/srv/default", Resolve([], new TrafficLogSettings { DefaultDataDirectory = "/srv/default" }, out string? store).DataDirectory);
        Assert.NotNull(store);

        foreach (var (configuration, settings) in new (Dictionary<string, string?>, TrafficLogSettings?)[]
                 {
                     ([], new TrafficLogSettings()), // a gateway without --redis or --data-dir
                     ([], new TrafficLogSettings { Enabled = false, DataDirectory = "/srv/x" }),
                     (new() { ["TuneGateway:TrafficLog:Enabled"] = "false" }, new TrafficLogSettings { DefaultDataDirectory = "/srv/x" }),
                     ([], null),
                 })
        {
            var services = new ServiceCollection();
            Assert.Null(services.AddGatewayTrafficLog(new ConfigurationBuilder().AddInMemoryCollection(configuration).Build(), settings));
            Assert.DoesNotContain(services, s => s.ServiceType == typeof(ITrafficLog) || s.ServiceType == typeof(TrafficLogObserver));
        }
    }
}
