using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using CsCheck;
using Xunit.Abstractions;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.Extensions.DependencyInjection;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Gateway;
using TuneGateway.Cli.Hosting;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Tests.Dashboard;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>
/// Property-based fuzzing of every route the running host maps (read from its endpoint data
/// source, so a new route is fuzzed without touching this file; the gateway's proxied routes are
/// among them): valid seed bodies mutated (random bytes, truncation, values swapped for other
/// types, huge numbers, NaN and Infinity literals, deep nesting, long strings, invalid UTF-8,
/// duplicate and unknown keys, other roots), wrong content types, chunked bodies, odd headers,
/// keys and query strings. No answer may be a 5xx, every error must be in OpenAI's shape, and the
/// host must keep serving. The seed is fixed, so a run is reproducible; a failure prints it with
/// the smallest failing request CsCheck found (set CsCheck_Seed to replay another seed).
/// </summary>
public sealed class FuzzTests(AllRoutesServeFixture fixture, ITestOutputHelper output) : IClassFixture<AllRoutesServeFixture>
{
    /// <summary>How often each route answered each status, printed after the run: shows what the run reached.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _statuses = new();

    /// <summary>Requests per run (about 15 s on two cores); TUNEGW_FUZZ_ITERATIONS runs more, e.g. overnight.</summary>
    private const int DefaultIterations = 4000;
    private const string Seed = "0fuzzTuneGw1";
    /// <summary>A normal request is checked after every this many fuzzed ones, so that a broken host is caught near its cause.</summary>
    private const int HealthCheckEvery = 50;

    private static int Iterations => int.TryParse(Environment.GetEnvironmentVariable("TUNEGW_FUZZ_ITERATIONS"), out int n) && n > 0 ? n : DefaultIterations;

    private sealed record Route(string Method, string Pattern, bool TakesBody);

    /// <summary>A generated request, as numbers CsCheck can shrink; <see cref="Build"/> turns it into HTTP.</summary>
    private sealed record Case(int Route, int Mutation, int Position, int Fragment, int ContentType, int Auth, int Query, int PathValue, byte[] Bytes);

    /// <summary>Every route with its methods, from the host itself; the fallback (no route) is fuzzed by the unknown path values.</summary>
    private IReadOnlyList<Route> Routes()
    {
        var source = fixture.Host.App.Services.GetRequiredService<EndpointDataSource>();
        var routes = new List<Route>();
        foreach (var endpoint in source.Endpoints.OfType<RouteEndpoint>())
        {
            string pattern = endpoint.RoutePattern.RawText ?? "";
            if (pattern.StartsWith("{*", StringComparison.Ordinal)) continue; // the fallback
            var methods = endpoint.Metadata.GetMetadata<HttpMethodMetadata>()?.HttpMethods ?? [HttpMethods.Get];
            foreach (string method in methods.Where(m => m != HttpMethods.Head))
                routes.Add(new Route(method, "/" + pattern.TrimStart('/'), method is "POST" or "PUT" or "PATCH"));
        }
        return [.. routes.Distinct().OrderBy(r => r.Pattern, StringComparer.Ordinal).ThenBy(r => r.Method, StringComparer.Ordinal)];
    }

    /// <summary>A valid body for each route that takes one (by its pattern's tail); <c>{}</c> for the rest.</summary>
    private static JsonNode SeedBody(string pattern)
    {
        string tail = pattern.Replace(ServeHost.InProcessWorkerPrefix, "", StringComparison.Ordinal);
        string json = tail switch
        {
            "/v1/completions" => """{"model":"llama-tiny","prompt":"Hello","max_tokens":2,"temperature":0,"stop":["\n"],"logprobs":1,"n":1,"stream":false,"user":"fuzz"}""",
            "/v1/chat/completions" => """{"model":"llama-tiny","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hello"}]}],"max_tokens":2,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}""",
            "/v1/load_lora_adapter" => """{"lora_name":"fuzz-adapter","lora_path":"/nonexistent/fuzz","load_inplace":false}""",
            "/v1/unload_lora_adapter" => """{"lora_name":"fuzz-adapter"}""",
            "/v1/feedback" => """{"id":"cmpl-0123456789","rating":1,"correction":"better","comment":"ok","scale":"thumbs"}""",
            "/internal/workers" => """{"worker_id":"fuzz-worker","url":"http://127.0.0.1:9","base_model":"llama-tiny","ready":false,"loaded_adapters":[],"running":0}""",
            "/admin/aliases/{name}" => """{"versions":[{"model":"llama-tiny","weight":1}],"base_model":"llama-tiny"}""",
            "/admin/adapters/{name}/promote" or "/admin/adapters/{name}/rollback" => """{"version":"v1","reason":"fuzz"}""",
            "/admin/approvals/{id}" => """{"approve":true,"comment":"fuzz"}""",
            "/admin/adapters/{name}/versions" => """{"path":"/nonexistent/fuzz","version":"v9","promote":false,"reason":"fuzz"}""",
            "/admin/pipelines/{name}" => new PipelineDefinition { Adapter = "fuzz", Schedule = new ScheduleSettings { Cron = "0 0 3 * * ?" } }.ToJson().GetRawText(),
            _ => "{}",
        };
        return JsonNode.Parse(json)!;
    }

    /// <summary>Raw JSON text put in place of one value of the seed (some on purpose not JSON at all).</summary>
    private static readonly byte[][] Fragments =
    [
        .. new[]
        {
            "null", "true", "false", "0", "-1", "-0", "1.5", "1e400", "-1e400", "1e-400", "123456789012345678901234567890", "9223372036854775808",
            "2147483648", "-2147483649", "NaN", "Infinity", "-Infinity", "\"\"", "\"x\"", "{}", "[]", "[1,2,3]", "[\"a\",null]", "{\"a\":{\"b\":[]}}",
            "\"\\u0000\"", "\"\\ud83d\\ude00\"", "\"\\udc00\"", "\"\\ud800x\"", "\"ü€😀\"", "\"\\x\"", "\"unterminated", "01", ".5", "+1", "tru", "[1,]", "{\"a\"}",
            new string('[', 300) + new string(']', 300), string.Concat(Enumerable.Repeat("{\"a\":", 100)) + "1" + new string('}', 100),
            "\"" + new string('a', 100_000) + "\"", "[" + string.Join(",", Enumerable.Repeat("\"stop\"", 500)) + "]",
            "[" + string.Join(",", Enumerable.Range(0, 300).Select(i => i * 7919 % 50000)) + "]",
        }.Select(Encoding.UTF8.GetBytes),
        [(byte)'"', (byte)'a', 0xff, 0xfe, (byte)'"'],
        [(byte)'"', 0xc3, (byte)'"'],
        [(byte)'"', 0xed, 0xa0, 0x80, (byte)'"'], // a surrogate encoded as UTF-8 (CESU): not UTF-8
    ];

    private static readonly string[] ContentTypes =
    [
        "application/json", "application/json", "application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=fuzz", "application/json; charset=utf-16", "", "chunked",
    ];

    /// <summary>
    /// Values for route parameters. Not %00: Kestrel refuses a NUL in the path itself, before any
    /// middleware, with an empty 400 that no application code can shape.
    /// </summary>
    private static readonly string[] PathValues = ["support-bot", "fuzz", "v1", "x%20y", "%ff%fe", "..%2F..%2Fetc", "%01", "%C3%BC", new('a', 300), "nope", "llama-tiny@v1", "-1"];

    private static readonly string[] QueryKeys = ["limit", "after", "status", "adapter", "cursor", "since", "model", "n", "stream", "file"];
    private static readonly string[] QueryValues = ["abc", "-1", "0", "1e99", "99999999999999999999", "", "%ff", "%00", "all", "pending", new('z', 2000), "true"];

    private const string Placeholder = "@@fuzz@@";

    /// <summary>Every place in the tree a value can be swapped (object members and array items), by a setter.</summary>
    private static List<Action<JsonNode?>> Places(JsonNode node)
    {
        var places = new List<Action<JsonNode?>>();
        void Walk(JsonNode? n)
        {
            if (n is JsonObject o)
            {
                foreach (var (key, value) in o.ToArray())
                {
                    places.Add(v => o[key] = v);
                    Walk(value);
                }
            }
            else if (n is JsonArray a)
            {
                for (int i = 0; i < a.Count; i++)
                {
                    int index = i;
                    places.Add(v => a[index] = v);
                    Walk(a[i]);
                }
            }
        }
        Walk(node);
        return places;
    }

    private static byte[] Replace(byte[] text, string marker, byte[] with)
    {
        byte[] quoted = Encoding.UTF8.GetBytes("\"" + marker + "\"");
        int at = text.AsSpan().IndexOf(quoted);
        return at < 0 ? text : [.. text[..at], .. with, .. text[(at + quoted.Length)..]];
    }

    /// <summary>The seed body changed by one mutation.</summary>
    private static byte[]? Body(Route route, Case c)
    {
        var seed = SeedBody(route.Pattern);
        byte[] valid = JsonSerializer.SerializeToUtf8Bytes(seed);
        byte[] fragment = Fragments[c.Fragment % Fragments.Length];
        switch (c.Mutation % 12)
        {
            case 0: return valid;
            case 1: return c.Bytes;
            case 2: return valid[..(c.Position % valid.Length)];
            case 3:
            case 4:
            case 5:
            {
                var places = Places(seed);
                if (places.Count == 0) return fragment;
                places[c.Position % places.Count](JsonValue.Create(Placeholder));
                return Replace(JsonSerializer.SerializeToUtf8Bytes(seed), Placeholder, fragment);
            }
            case 6:
            {
                // A duplicate or unknown key at the root, with an odd value.
                if (seed is not JsonObject root) return fragment;
                string[] keys = [.. root.Select(p => p.Key), "guided_json", "made_up", "__proto__", ""];
                string key = keys[c.Position % keys.Length];
                byte[] text = JsonSerializer.SerializeToUtf8Bytes(root);
                return [.. text[..^1], .. Encoding.UTF8.GetBytes((root.Count > 0 ? "," : "") + JsonSerializer.Serialize(key) + ":"), .. fragment, (byte)'}'];
            }
            case 7:
            {
                if (seed is JsonObject root && root.Count > 0) root.Remove(root.ElementAt(c.Position % root.Count).Key);
                return JsonSerializer.SerializeToUtf8Bytes(seed);
            }
            case 8: return [];
            case 9: return [(byte)'[', .. valid, (byte)']'];
            case 10: return fragment;
            default:
            {
                // Random bytes spliced into the valid body.
                int at = c.Position % (valid.Length + 1);
                return [.. valid[..at], .. c.Bytes, .. valid[at..]];
            }
        }
    }

    private HttpRequestMessage Build(Route route, Case c, out string description)
    {
        string path = System.Text.RegularExpressions.Regex.Replace(route.Pattern, @"\{\**([^}:=?]+)[^}]*\}", m => PathValues[(c.PathValue + m.Index) % PathValues.Length]);
        if (c.Query % 3 == 0)
        {
            string key = QueryKeys[c.Query / 3 % QueryKeys.Length];
            string value = QueryValues[c.Query / 7 % QueryValues.Length];
            path += $"?{key}={value}&{key}={QueryValues[c.Query / 11 % QueryValues.Length]}";
        }
        var request = new HttpRequestMessage(new HttpMethod(route.Method), fixture.BaseUrl + path);
        byte[]? body = route.TakesBody || c.Mutation % 5 == 0 ? Body(route, c) : null;
        string contentType = ContentTypes[c.ContentType % ContentTypes.Length];
        if (body is not null)
        {
            request.Content = new ByteArrayContent(body);
            if (contentType == "chunked")
            {
                request.Headers.TransferEncodingChunked = true;
                request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            }
            else if (contentType.Length > 0)
                request.Content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        }
        // One request in four without the admin key: auth failures must be in shape too, but most requests should reach the routes.
        switch (c.Auth % 20)
        {
            case 0: break; // no key
            case 1: request.Headers.TryAddWithoutValidation("Authorization", "Bearer sk-not-a-key"); break;
            case 2: request.Headers.TryAddWithoutValidation("Authorization", "Basic Zm9vOmJhcg=="); break;
            case 3: request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", LifecycleServeHost.InferenceKey); break;
            case 4: request.Headers.TryAddWithoutValidation("X-Api-Key", LifecycleServeHost.AdminKey); break;
            default: request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", fixture.KeyFor(path)); break;
        }
        if (c.Auth % 7 == 0) request.Headers.TryAddWithoutValidation(GatewayProxyMiddleware.UserHeader, new string('u', 5000));
        if (c.Auth % 11 == 0) request.Headers.TryAddWithoutValidation(GatewayProxyMiddleware.EvaluationHeader, "maybe");
        if (c.Auth % 13 == 0) request.Headers.TryAddWithoutValidation("Accept", "text/event-stream, */*;q=bogus");

        string preview = body is null ? "(no body)" : Encoding.UTF8.GetString(body[..Math.Min(body.Length, 300)]).Replace("\uFFFD", "\\ufffd");
        description = $"{route.Method} {path} [{contentType}] auth#{c.Auth % 20}: {preview}{(body?.Length > 300 ? $"... ({body.Length} bytes)" : "")}";
        return request;
    }

    /// <summary>Takes out workers the fuzzed registrations added, so that real requests keep going to the in-process worker.</summary>
    private void ForgetFuzzedWorkers(string realUrl)
    {
        var registry = fixture.Host.App.Services.GetRequiredService<WorkerRegistry>();
        foreach (var worker in registry.All.Where(w => w.Url != realUrl)) registry.Remove(worker.Url);
    }

    private async Task CheckAsync(Route route, Case c, string realWorker, int index)
    {
        using var request = Build(route, c, out string description);
        description = $"case {index}: {description}";
        using var response = await fixture.Http.SendAsync(request);
        byte[] answer = await response.Content.ReadAsByteArrayAsync();
        if (route.Pattern.EndsWith("/internal/workers", StringComparison.Ordinal)) ForgetFuzzedWorkers(realWorker);

        int status = (int)response.StatusCode;
        _statuses.AddOrUpdate($"{route.Method} {route.Pattern} {status}", 1, (_, n) => n + 1);
        string text = Encoding.UTF8.GetString(answer[..Math.Min(answer.Length, 2000)]);
        Assert.True(status < 500, $"{status} for {description}\n{text}\nserver errors:\n{fixture.Errors.Recent}");
        if (status < 400) return;
        JsonElement error;
        try
        {
            using var document = JsonDocument.Parse(answer);
            error = document.RootElement.Clone();
        }
        catch (JsonException)
        {
            throw new Xunit.Sdk.XunitException($"{status} without a JSON body for {description}\n{text}");
        }
        try
        {
            AssertError(response.StatusCode, (response.StatusCode, error, response), null);
        }
        catch (Exception ex) when (ex is Xunit.Sdk.XunitException or InvalidOperationException or KeyNotFoundException)
        {
            throw new Xunit.Sdk.XunitException($"{status} not in OpenAI's error shape for {description}\n{text}\n{ex.Message}");
        }
    }

    [Fact]
    public async Task NoRouteAnswersBadInputWithA5xxOrAnErrorOutsideOpenAisShape()
    {
        var routes = Routes();
        // The endpoint data source really is the host's: the proxied, worker, gateway and admin routes are all there.
        foreach (string expected in new[] { "/v1/completions", "/v1/chat/completions", ServeHost.InProcessWorkerPrefix + "/v1/completions", "/v1/feedback", "/internal/workers", "/admin/pipelines/{name}" })
            Assert.Contains(routes, r => r.Pattern == expected);
        string realWorker = fixture.Host.App.Services.GetRequiredService<WorkerRegistry>().All.Single().Url;

        var number = Gen.Int[0, 1 << 20];
        var gen = Gen.Select(Gen.Select(number, number, number, number, number, number, number, number, (a, b, d, e, f, g, h, i) => (a, b, d, e, f, g, h, i)),
            Gen.Byte.Array[0, 64], (n, bytes) => new Case(n.a % routes.Count, n.b, n.d, n.e, n.f, n.g, n.h, n.i, bytes));
        // One sample of the whole sequence from the fixed seed: CsCheck seeds only the first
        // iteration of a sample, so separate iterations would differ from run to run.
        string? failing = null;
        await gen.Array[Iterations].SampleAsync(async cases =>
        {
            for (int i = 0; i < cases.Length; i++)
            {
                failing = $"case {i}";
                await CheckAsync(routes[cases[i].Route], cases[i], realWorker, i);
                if ((i + 1) % HealthCheckEvery == 0) await fixture.AssertStillServesAsync();
            }
            failing = null;
        }, seed: Seed, iter: 1, threads: 1, print: _ => failing ?? "");

        await fixture.AssertStillServesAsync();
        foreach (var (key, n) in _statuses.OrderBy(p => p.Key, StringComparer.Ordinal)) output.WriteLine($"{n,5} {key}");
    }
}
