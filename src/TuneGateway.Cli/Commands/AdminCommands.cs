using System.CommandLine;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace TuneGateway.Cli.Commands;

/// <summary>
/// <c>tunegw adapters</c>, <c>tunegw pipelines</c> and <c>tunegw approvals</c>: the operator and
/// MLOps API of a running gateway, from the command line (roles are enforced by the server).
/// </summary>
internal static class AdminCommands
{
    private static readonly Option<string> Url = new("--url") { Description = "Gateway address (or TUNEGW_URL).", DefaultValueFactory = _ => Environment.GetEnvironmentVariable("TUNEGW_URL") ?? "http://localhost:8000", Recursive = true };
    private static readonly Option<string?> Key = new("--api-key") { Description = "API key (or TUNEGW_API_KEY).", DefaultValueFactory = _ => Environment.GetEnvironmentVariable("TUNEGW_API_KEY"), Recursive = true };
    private static readonly Option<bool> Raw = new("--json") { Description = "Print the server's JSON.", Recursive = true };

    public static IEnumerable<Command> Create() => [Adapters(), Pipelines(), Approvals()];

    private static Command Adapters()
    {
        var name = new Argument<string>("adapter");
        var version = new Argument<string>("version");
        var optionalVersion = new Argument<string?>("version") { Arity = ArgumentArity.ZeroOrOne };
        var reason = new Option<string?>("--reason") { Description = "Why (kept in the audit trail)." };

        var list = new Command("list", "Adapters with their production and canary versions.");
        list.SetAction((p, ct) => CallAsync(p, HttpMethod.Get, "admin/adapters", null, json =>
        {
            foreach (var a in json.GetProperty("data").EnumerateArray())
                Console.WriteLine($"{a.GetProperty("adapter").GetString(),-24} production={Str(a, "production") ?? "-",-8} canary={Str(a, "canary") ?? "-",-8} versions={a.GetProperty("versions").GetInt32()}");
        }, ct));

        var show = new Command("show", "Versions, states and lineage of an adapter.") { name };
        show.SetAction((p, ct) => CallAsync(p, HttpMethod.Get, $"admin/adapters/{Esc(p.GetValue(name)!)}", null, json =>
        {
            foreach (var v in json.GetProperty("versions").EnumerateArray())
                Console.WriteLine($"{v.GetProperty("version").GetString(),-6} {v.GetProperty("state").GetString(),-12} parent={Str(v, "parent_version") ?? "-",-6} dataset={Str(v, "dataset_id") ?? "-"} sha256={Str(v, "sha256")?[..12]}  {Str(v, "state_reason")}");
            if (json.TryGetProperty("alias", out var alias) && alias.ValueKind == JsonValueKind.Object)
                Console.WriteLine("routing: " + string.Join(", ", alias.GetProperty("arms").EnumerateArray().Select(a => $"{a.GetProperty("model").GetString()} {a.GetProperty("weight").GetDouble():P0}")));
        }, ct));

        var promote = new Command("promote", "Send all traffic of the alias to a version.") { name, version, reason };
        promote.SetAction((p, ct) => CallAsync(p, HttpMethod.Post, $"admin/adapters/{Esc(p.GetValue(name)!)}/promote",
            new { version = p.GetValue(version), reason = p.GetValue(reason) }, json => Console.WriteLine($"{Str(json, "adapter")}@{Str(json, "version")} is now {Str(json, "state")}"), ct));

        var rollback = new Command("rollback", "End a canary, or return production to the previous (or a named) version.") { name, optionalVersion, reason };
        rollback.SetAction((p, ct) => CallAsync(p, HttpMethod.Post, $"admin/adapters/{Esc(p.GetValue(name)!)}/rollback",
            new { version = p.GetValue(optionalVersion), reason = p.GetValue(reason) }, json => Console.WriteLine($"{Str(json, "adapter")}@{Str(json, "version")} serves the alias"), ct));

        return new Command("adapters", "List adapters and versions, promote, roll back.") { list, show, promote, rollback };
    }

    private static Command Pipelines()
    {
        var name = new Argument<string>("adapter");
        var file = new Argument<string>("file") { Description = "Pipeline definition (JSON)." };

        var list = new Command("list", "Pipelines and whether they are paused.");
        list.SetAction((p, ct) => CallAsync(p, HttpMethod.Get, "admin/pipelines", null, json =>
        {
            foreach (var r in json.GetProperty("data").EnumerateArray())
            {
                var def = r.GetProperty("definition");
                string cron = def.TryGetProperty("schedule", out var s) && s.TryGetProperty("cron", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()! : "-";
                Console.WriteLine($"{r.GetProperty("adapter").GetString(),-24} {(r.GetProperty("paused").GetBoolean() ? "paused" : "active"),-7} cron={cron} promotion={Str(def, "promotion")}");
            }
        }, ct));
        var show = new Command("show", "A pipeline's definition and next run.") { name };
        show.SetAction((p, ct) => CallAsync(p, HttpMethod.Get, $"admin/pipelines/{Esc(p.GetValue(name)!)}", null, json => Console.WriteLine(Pretty(json)), ct));
        var set = new Command("set", "Create or replace a pipeline from a JSON file.") { name, file };
        set.SetAction(async (p, ct) =>
        {
            using var doc = JsonDocument.Parse(await File.ReadAllTextAsync(p.GetValue(file)!, ct));
            return await CallAsync(p, HttpMethod.Put, $"admin/pipelines/{Esc(p.GetValue(name)!)}", doc.RootElement,
                json => Console.WriteLine($"pipeline {Str(json, "adapter")} saved (revision {json.GetProperty("revision").GetInt64()})"), ct);
        });
        var pause = new Command("pause", "Stop scheduled and triggered runs (canaries stay guarded).") { name };
        pause.SetAction((p, ct) => CallAsync(p, HttpMethod.Post, $"admin/pipelines/{Esc(p.GetValue(name)!)}/pause", new { }, _ => Console.WriteLine("paused"), ct));
        var resume = new Command("resume", "Resume scheduled and triggered runs.") { name };
        resume.SetAction((p, ct) => CallAsync(p, HttpMethod.Post, $"admin/pipelines/{Esc(p.GetValue(name)!)}/resume", new { }, _ => Console.WriteLine("resumed"), ct));
        var run = new Command("run", "Run a pipeline now.") { name };
        run.SetAction((p, ct) => CallAsync(p, HttpMethod.Post, $"admin/pipelines/{Esc(p.GetValue(name)!)}/run", new { }, _ => Console.WriteLine("run requested"), ct));
        var jobs = new Command("jobs", "Recent pipeline steps.") { name };
        jobs.SetAction((p, ct) => CallAsync(p, HttpMethod.Get, $"admin/jobs?adapter={Esc(p.GetValue(name)!)}&limit=30", null, json =>
        {
            foreach (var j in json.GetProperty("data").EnumerateArray())
                Console.WriteLine($"{j.GetProperty("started_at").GetDateTimeOffset():u} {Str(j, "run_id"),-24} {Str(j, "step"),-9} {Str(j, "status"),-9} {Str(j, "version") ?? "",-4} {Str(j, "message")}");
        }, ct));

        return new Command("pipelines", "Retraining pipelines: list, show, set, pause, resume, run now, job history.") { list, show, set, pause, resume, run, jobs };
    }

    private static Command Approvals()
    {
        var id = new Argument<string>("id");
        var comment = new Option<string?>("--comment") { Description = "Kept in the audit trail." };

        var list = new Command("list", "Promotions waiting for an operator.");
        list.SetAction((p, ct) => CallAsync(p, HttpMethod.Get, "admin/approvals", null, json =>
        {
            foreach (var a in json.GetProperty("data").EnumerateArray())
                Console.WriteLine($"{Str(a, "id"),-34} {Str(a, "action"),-8} {Str(a, "adapter")}@{Str(a, "version")}  since {a.GetProperty("created_at").GetDateTimeOffset():u}");
        }, ct));
        Command Resolve(string verb, bool approve)
        {
            var command = new Command(verb, approve ? "Approve (promote) a pending candidate." : "Reject (roll back) a pending candidate.") { id, comment };
            command.SetAction((p, ct) => CallAsync(p, HttpMethod.Post, $"admin/approvals/{Esc(p.GetValue(id)!)}",
                new { approve, comment = p.GetValue(comment) }, json => Console.WriteLine($"{Str(json, "adapter")}@{Str(json, "version")}: {Str(json, "status")}"), ct));
            return command;
        }
        return new Command("approvals", "Pending approvals: list, approve, reject.") { list, Resolve("approve", true), Resolve("reject", false) };
    }

    /// <summary>Calls the gateway and prints the result, or the server's error message.</summary>
    private static async Task<int> CallAsync(ParseResult parse, HttpMethod method, string path, object? body, Action<JsonElement> print, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = new Uri(parse.GetValue(Url)!.TrimEnd('/') + "/"), Timeout = TimeSpan.FromSeconds(60) };
        using var request = new HttpRequestMessage(method, path);
        if (parse.GetValue(Key) is { } key) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (body is not null) request.Content = JsonContent.Create(body);
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(request, cancellationToken);
        }
        catch (HttpRequestException ex)
        {
            Console.Error.WriteLine($"error: cannot reach {http.BaseAddress}: {ex.Message}");
            return 2;
        }
        using (response)
        {
            string text = await response.Content.ReadAsStringAsync(cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
                string message = text;
                try { message = JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("message").GetString() ?? text; }
                catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException) { }
                Console.Error.WriteLine($"error ({(int)response.StatusCode}): {message}");
                return 1;
            }
            if (string.IsNullOrWhiteSpace(text)) return 0;
            using var doc = JsonDocument.Parse(text);
            if (parse.GetValue(Raw)) Console.WriteLine(Pretty(doc.RootElement));
            else print(doc.RootElement);
            return 0;
        }
    }

    private static string? Str(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
    private static string Esc(string s) => Uri.EscapeDataString(s);
    private static string Pretty(JsonElement e) => JsonSerializer.Serialize(e, new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
}
