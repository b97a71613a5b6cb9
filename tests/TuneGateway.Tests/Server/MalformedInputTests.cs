using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TuneGateway.Storage.Lifecycle;
using TuneGateway.Tests.Dashboard;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>
/// A <c>serve</c> host with every route mapped (the OpenAI API through the gateway, the in-process
/// worker's own API under <see cref="TuneGateway.Cli.Hosting.ServeHost.InProcessWorkerPrefix"/>, the
/// lifecycle and admin API), with an admin key, shared by the bad-input tests and the fuzz suite.
/// </summary>
public sealed class AllRoutesServeFixture : IAsyncLifetime
{
    public LifecycleServeHost Host { get; private set; } = null!;
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromMinutes(2) };
    public string BaseUrl => Host.BaseUrl;

    /// <summary>Errors the host logged (unhandled exceptions among them), so that a failing test can say what broke.</summary>
    public ErrorLog Errors { get; } = new();

    public async Task InitializeAsync() => Host = await LifecycleServeHost.StartAsync(services => services.AddSingleton<ILoggerProvider>(Errors));

    /// <summary>
    /// The key that may call <paramref name="path"/>: serve's internal hop key for its in-process
    /// worker's routes (to clients they do not exist), the worker key for registration, else admin.
    /// </summary>
    public string KeyFor(string path) =>
        path.StartsWith(TuneGateway.Cli.Hosting.ServeHost.InProcessWorkerPrefix + "/", StringComparison.Ordinal) ? Host.App.Services.GetRequiredService<TuneGateway.Gateway.Auth.InternalHop>().Key
        : path.StartsWith("/internal/workers", StringComparison.Ordinal) ? LifecycleServeHost.WorkerKey
        : LifecycleServeHost.AdminKey;

    public HttpRequestMessage Request(HttpMethod method, string path, byte[]? body, string contentType = "application/json", string? key = null)
    {
        key ??= KeyFor(path);
        var request = new HttpRequestMessage(method, BaseUrl + path);
        if (body is not null)
        {
            request.Content = new ByteArrayContent(body);
            request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        }
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return request;
    }

    /// <summary>A normal completion still works (the server keeps serving after bad input).</summary>
    public async Task AssertStillServesAsync()
    {
        var ok = await SendJsonAsync(Http, Post(BaseUrl + "/v1/completions", new { model = "llama-tiny", prompt = "hi", max_tokens = 1 }, LifecycleServeHost.AdminKey));
        Assert.Equal(HttpStatusCode.OK, ok.Status);
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        if (Host is not null) await Host.DisposeAsync();
    }
}

/// <summary>Keeps the last errors a host logs, with their exceptions.</summary>
public sealed class ErrorLog : ILoggerProvider
{
    private const int Kept = 20;
    private readonly ConcurrentQueue<string> _entries = new();

    public string Recent => string.Join("\n", _entries);

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class Logger(ErrorLog log, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Error;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            log._entries.Enqueue($"{category}: {formatter(state, exception)} {exception}");
            while (log._entries.Count > Kept) log._entries.TryDequeue(out _);
        }
    }
}

/// <summary>Bodies that are not valid JSON text are a 400 in OpenAI's shape on every route that reads JSON, never a 500.</summary>
public sealed class MalformedInputTests(AllRoutesServeFixture fixture) : IClassFixture<AllRoutesServeFixture>
{
    private const string Worker = TuneGateway.Cli.Hosting.ServeHost.InProcessWorkerPrefix;

    /// <summary>Every route that reads a JSON body: through the gateway, on the worker itself, the admin API.</summary>
    public static TheoryData<string, string> JsonRoutes() => new()
    {
        { "POST", "/v1/completions" },
        { "POST", "/v1/chat/completions" },
        { "POST", Worker + "/v1/completions" },
        { "POST", Worker + "/v1/chat/completions" },
        { "POST", "/v1/load_lora_adapter" },
        { "POST", "/v1/unload_lora_adapter" },
        { "POST", Worker + "/v1/load_lora_adapter" },
        { "POST", Worker + "/v1/unload_lora_adapter" },
        { "POST", "/v1/feedback" },
        { "POST", "/internal/workers" },
        { "PUT", "/admin/aliases/fuzz" },
        { "POST", "/admin/adapters/support-bot/promote" },
        { "POST", "/admin/adapters/support-bot/rollback" },
        { "POST", "/admin/adapters/support-bot/versions" },
        { "POST", "/admin/approvals/nope" },
        { "PUT", "/admin/pipelines/support-bot" },
    };

    /// <summary>
    /// A body whose strings (in every field some route reads) are not valid text: raw bytes that are not UTF-8,
    /// or (<paramref name="escaped"/>) a lone surrogate written as a JSON escape.
    /// </summary>
    private static byte[] BadTextBody(bool escaped)
    {
        string[] fields = ["model", "prompt", "lora_name", "lora_path", "id", "worker_id", "url", "version", "reason", "path", "adapter", "comment"];
        var body = new MemoryStream();
        void Write(string text) => body.Write(Encoding.UTF8.GetBytes(text));
        void Bad()
        {
            if (escaped) Write("\\ud800");
            else body.Write([0xff, 0xfe]);
        }
        Write("{");
        foreach (string field in fields)
        {
            Write($"\"{field}\":\"");
            Bad();
            Write("\",");
        }
        Write("\"messages\":[{\"role\":\"user\",\"content\":\"");
        Bad();
        Write("\"}],\"versions\":[{\"model\":\"");
        Bad();
        Write("\",\"weight\":1}],\"rating\":1,\"approve\":true}");
        return body.ToArray();
    }

    [Theory]
    [MemberData(nameof(JsonRoutes))]
    public async Task InvalidUtf8InAJsonStringIs400(string method, string path)
    {
        var result = await SendJsonAsync(fixture.Http, fixture.Request(new HttpMethod(method), path, BadTextBody(escaped: false)));
        AssertError(HttpStatusCode.BadRequest, result, null);
        await fixture.AssertStillServesAsync();
    }

    [Theory]
    [MemberData(nameof(JsonRoutes))]
    public async Task ALoneSurrogateEscapeIs400(string method, string path)
    {
        var result = await SendJsonAsync(fixture.Http, fixture.Request(new HttpMethod(method), path, BadTextBody(escaped: true)));
        AssertError(HttpStatusCode.BadRequest, result, null);
        await fixture.AssertStillServesAsync();
    }

    [Theory]
    [MemberData(nameof(JsonRoutes))]
    public async Task ADuplicateKeyIs400NamingIt(string method, string path)
    {
        // Found by the fuzz suite: the gateway's parser threw on it (a 500), and the worker's took one of the two;
        // the gateway checks the key's allowed models on the body the worker then serves, so both must read the same.
        byte[] body = """{"model":"llama-tiny","prompt":"x","messages":[{"role":"user","content":"x"}],"lora_name":"a","model":"shout"}"""u8.ToArray();
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(fixture.Http, fixture.Request(new HttpMethod(method), path, body)), "model", "duplicate_key");
        byte[] nested = """{"model":"llama-tiny","messages":[{"role":"user","role":"tool","content":"x"}]}"""u8.ToArray();
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(fixture.Http, fixture.Request(new HttpMethod(method), path, nested)), null, "duplicate_key");
        await fixture.AssertStillServesAsync();
    }

    [Theory]
    [InlineData("")]
    [InlineData("text/plain")]
    public async Task AnAliasBodyIsReadWhateverItsContentType(string contentType)
    {
        // Found by the fuzz suite: without a JSON content type the alias body was a 500.
        var request = fixture.Request(HttpMethod.Put, "/admin/aliases/fuzz-content-type", Encoding.UTF8.GetBytes("""{"versions":[{"model":"llama-tiny","weight":1}]}"""));
        request.Content!.Headers.ContentType = contentType.Length == 0 ? null : new MediaTypeHeaderValue(contentType);
        var result = await SendJsonAsync(fixture.Http, request);
        Assert.Equal(HttpStatusCode.OK, result.Status);
        var bad = fixture.Request(HttpMethod.Put, "/admin/aliases/fuzz-content-type", Encoding.UTF8.GetBytes("{\"versions\": 3"));
        bad.Content!.Headers.ContentType = null;
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(fixture.Http, bad), "versions");
    }

    [Theory]
    [InlineData("GET", "/nope.txt", "application/json")]
    [InlineData("POST", "/admin/nothing/a.b", "text/plain")]
    [InlineData("GET", "/v1/models.json", "application/json")]
    public async Task AFileLikePathNoRouteTakesIs404InOpenAisShape(string method, string path, string contentType)
    {
        // Found by the fuzz suite: the fallback skipped paths with a dot, which got an empty 404.
        var result = await SendJsonAsync(fixture.Http, fixture.Request(new HttpMethod(method), path, "{}"u8.ToArray(), contentType));
        AssertError(HttpStatusCode.NotFound, result, null, "not_found");
    }

    [Theory]
    [InlineData("PUT", "/admin/pipelines/%01", "name")]
    [InlineData("GET", "/admin/adapters/a..b", "name")]
    [InlineData("GET", "/admin/adapters/support-bot/versions/%01", "version")]
    [InlineData("POST", "/admin/adapters/%01/promote", "name")]
    [InlineData("DELETE", "/admin/pipelines/%7F", "name")]
    public async Task AnInvalidAdapterNameOrVersionInThePathIs400NamingIt(string method, string path, string param)
    {
        // Found by the fuzz suite: the lifecycle stores refused these names with an ArgumentException (a 500).
        var result = await SendJsonAsync(fixture.Http, fixture.Request(new HttpMethod(method), path, method is "GET" or "DELETE" ? null : """{"version":"v1"}"""u8.ToArray()));
        AssertError(HttpStatusCode.BadRequest, result, param);
    }

    [Fact]
    public async Task AnInvalidVersionInTheBodyIs400()
    {
        var result = await SendJsonAsync(fixture.Http, fixture.Request(HttpMethod.Post, "/admin/adapters/support-bot/promote", """{"version":"../x"}"""u8.ToArray()));
        Assert.True(result.Status is HttpStatusCode.BadRequest or HttpStatusCode.NotFound, $"{result.Status} {result.Body}");
        AssertError(result.Status, result, null);
    }

    [Theory]
    [InlineData("POST", "/internal/workers", "text/plain")]
    [InlineData("POST", "/admin/approvals/x", "application/x-www-form-urlencoded")]
    [InlineData("POST", "/admin/adapters/support-bot/promote", "multipart/form-data; boundary=b")]
    public async Task ARouteThatBindsJsonAnswersAnotherContentTypeWith415(string method, string path, string contentType)
    {
        // Found by the fuzz suite: routing passed such requests to the fallback, which said there was no route.
        var result = await SendJsonAsync(fixture.Http, fixture.Request(new HttpMethod(method), path, "{}"u8.ToArray(), contentType));
        AssertError(HttpStatusCode.UnsupportedMediaType, result, null, "unsupported_media_type");
    }

    /// <summary>The gateway echoes the model in a response header: one a header cannot carry is left out, not a 502.</summary>
    [Theory]
    [InlineData("\\u0000", false)]
    [InlineData("\\u0000", true)]
    [InlineData("mod\\r\\nel", true)]
    [InlineData("\\u00e9t\\u00e9", true)]
    public async Task AModelNameNoHeaderCanCarryIsAnsweredNotFailed(string escapedModel, bool stream)
    {
        string body = $$"""{"model":"{{escapedModel}}","messages":[{"role":"user","content":"Hello"}],"max_tokens":1,"stream":{{(stream ? "true" : "false")}}}""";
        var result = await SendJsonAsync(fixture.Http, fixture.Request(HttpMethod.Post, "/v1/chat/completions", Encoding.UTF8.GetBytes(body)));
        AssertError(HttpStatusCode.NotFound, result, "model", "model_not_found");
    }

    [Theory]
    [InlineData("not-a-url")]
    [InlineData("..%2F..%2Fetc")]
    [InlineData("http%3A%2F%2F127.0.0.1%3A9")]
    public async Task RemovingAnUnknownWorkerIs404InOpenAisShape(string id)
    {
        // Found by the fuzz suite: an id that is no URL was parsed as one (a 500), and an unknown one was an empty 404.
        var result = await SendJsonAsync(fixture.Http, fixture.Request(HttpMethod.Delete, "/internal/workers/" + id, null));
        AssertError(HttpStatusCode.NotFound, result, "id", "worker_not_found");
        await fixture.AssertStillServesAsync();
    }

    [Theory]
    [InlineData("/v1/completions")]
    [InlineData(Worker + "/v1/completions")]
    public async Task TheIssuesBodyIs400(string path)
    {
        // Issue #16's reproduction, byte for byte: {"model":"shout","prompt":"\xff\xfe"}.
        byte[] body = [.. Encoding.UTF8.GetBytes("{\"model\":\"shout\",\"prompt\":\""), 0xff, 0xfe, .. Encoding.UTF8.GetBytes("\"}")];
        var result = await SendJsonAsync(fixture.Http, fixture.Request(HttpMethod.Post, path, body));
        AssertError(HttpStatusCode.BadRequest, result, null);
        Assert.Contains("UTF-8", result.Body.GetProperty("error").GetProperty("message").GetString());
    }
}

/// <summary>An unexpected exception in a route is still answered in OpenAI's shape, and the host keeps serving.</summary>
public sealed class UnexpectedErrorTests
{
    /// <summary>An alias reader whose lookups fail like a bug would (the list, read at start, is empty).</summary>
    private sealed class BrokenAliasReader : IAliasReader
    {
        public Task<AliasRoute?> GetAsync(string alias, CancellationToken cancellationToken = default) => throw new InvalidOperationException("broken store");
        public Task<IReadOnlyList<AliasRoute>> ListAsync(CancellationToken cancellationToken = default) => Task.FromResult<IReadOnlyList<AliasRoute>>([]);
        public async IAsyncEnumerable<AliasRoute> WatchAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
            yield break;
        }
    }

    [Fact]
    public async Task AnUnhandledExceptionIsA500InOpenAisShape()
    {
        await using var gateway = TuneGateway.Gateway.GatewayHost.Create(new TuneGateway.Gateway.Proxy.GatewayOptions(),
            Settings() with { ConfigureServices = services => services.AddSingleton<IAliasReader>(new BrokenAliasReader()) });
        await gateway.StartAsync();
        using var http = new HttpClient();
        string url = BaseUrl(gateway);
        var result = await SendJsonAsync(http, new HttpRequestMessage(HttpMethod.Get, url + "/admin/aliases/x"));
        AssertError(HttpStatusCode.InternalServerError, result, null, "internal_error");
        Assert.DoesNotContain("broken store", result.Body.GetRawText());
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(url + "/healthz")).StatusCode);
        await gateway.StopAsync();
    }
}
