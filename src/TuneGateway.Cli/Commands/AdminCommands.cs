using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using TuneGateway.Cli.Operator;

namespace TuneGateway.Cli.Commands;

/// <summary>
/// <c>tunegw adapters</c>, <c>tunegw pipelines</c> and <c>tunegw approvals</c>: the operator and
/// MLOps API of a running gateway or serve (<c>/admin/...</c>, see LifecycleEndpoints), from the
/// command line. Roles are enforced by the server; exit codes are <see cref="CliExitCode"/>.
/// </summary>
internal sealed class AdminCommands(Func<string, string?> environment)
{
    public const string UrlVariable = "TUNEGW_URL";
    public const string KeyVariable = "TUNEGW_API_KEY";
    /// <summary>Where <c>tunegw serve</c> listens by default.</summary>
    public const string DefaultUrl = "http://127.0.0.1:8000";
    public const double DefaultTimeoutSeconds = 30;

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public IEnumerable<Command> Create() => [Adapters(), Pipelines(), Approvals()];

    /// <summary>
    /// <c>--url</c>, <c>--api-key</c>, <c>--timeout</c> and <c>--json</c>, on a command group and
    /// (recursively) its subcommands, so that both <c>tunegw adapters --url U list</c> and
    /// <c>tunegw adapters list --url U</c> work.
    /// </summary>
    private sealed class Connection
    {
        public Option<string?> Url { get; } = new("--url") { Description = $"Gateway or serve address (default: ${UrlVariable}, else {DefaultUrl}).", Recursive = true };
        public Option<string?> Key { get; } = new("--api-key") { Description = $"API key with the role the action needs (default: ${KeyVariable}).", Recursive = true };
        public Option<double> Timeout { get; } = new("--timeout") { Description = "Seconds to wait for the server.", DefaultValueFactory = _ => DefaultTimeoutSeconds, Recursive = true };
        public Option<bool> Json { get; } = new("--json") { Description = "Print the server's JSON answer instead of a table.", Recursive = true };

        public void AddTo(Command command)
        {
            command.Options.Add(Url);
            command.Options.Add(Key);
            command.Options.Add(Timeout);
            command.Options.Add(Json);
        }
    }

    private Command Adapters()
    {
        var c = new Connection();
        var name = new Argument<string>("adapter") { Description = "Adapter name (the alias clients ask for)." };
        var version = new Argument<string>("version") { Description = "Version, e.g. v3." };
        var optionalVersion = new Argument<string?>("version") { Description = "Version to return to (default: the previous production version).", Arity = ArgumentArity.ZeroOrOne };
        var reason = new Option<string?>("--reason") { Description = "Why (kept in the audit trail)." };

        var list = new Command("list", "Adapters with their production and canary versions.");
        list.SetAction((p, ct) => CallAsync(p, c, HttpMethod.Get, "admin/adapters", null, (json, o) =>
        {
            var table = new TextTable("ADAPTER", "PRODUCTION", "CANARY", "VERSIONS", "ROUTING");
            foreach (var a in Items(json))
                table.Add(Text(a, "adapter"), Text(a, "production"), Text(a, "canary"), Text(a, "versions"), Routing(a));
            Write(o, table, "No adapters are registered.");
            // What the workers hold now, registered or not (the bundled adapters, --lora-dir ones).
            var served = new TextTable("SERVED", "BASE", "STATUS", "WORKERS");
            if (json.TryGetProperty("served", out var s) && s.ValueKind == JsonValueKind.Array)
                foreach (var a in s.EnumerateArray()) served.Add(Text(a, "name"), Text(a, "base_model"), Text(a, "status"), Text(a, "workers"));
            if (served.Count > 0)
            {
                o.WriteLine();
                served.WriteTo(o);
            }
        }, ct));

        var show = new Command("show", "Versions, states and lineage of an adapter, its routing and canary.") { name };
        show.SetAction((p, ct) => CallAsync(p, c, HttpMethod.Get, $"admin/adapters/{Esc(p.GetValue(name)!)}", null, (json, o) =>
        {
            var table = new TextTable("VERSION", "STATE", "PARENT", "DATASET", "SHA256", "CREATED", "REASON");
            foreach (var v in json.GetProperty("versions").EnumerateArray())
                table.Add(Text(v, "version"), Text(v, "state"), Text(v, "parent_version"), Text(v, "dataset_id"), Text(v, "sha256") is { Length: > 12 } sha ? sha[..12] : Text(v, "sha256"),
                    Time(v, "created_at"), Text(v, "state_reason"));
            table.WriteTo(o);
            o.WriteLine($"routing: {Routing(json) ?? "-"}");
            if (json.TryGetProperty("canary", out var canary) && canary.ValueKind == JsonValueKind.Object)
                o.WriteLine($"canary: {Text(canary, "candidate")} at {Number(canary, "share")?.ToString("P0", CultureInfo.InvariantCulture)} against {Text(canary, "control")} since {Time(canary, "started_at")}" +
                    (Text(canary, "approval_id") is { } approval ? $", waiting for approval {approval}" : ""));
            if (json.TryGetProperty("pipeline", out var pipeline) && pipeline.ValueKind == JsonValueKind.Object)
                o.WriteLine($"pipeline: {(pipeline.TryGetProperty("paused", out var paused) && paused.ValueKind == JsonValueKind.True ? "paused" : "active")} (revision {Text(pipeline, "revision")})");
        }, ct));

        var promote = new Command("promote", "Make a version production: all traffic of the alias goes to it.") { name, version, reason };
        promote.SetAction((p, ct) => CallAsync(p, c, HttpMethod.Post, $"admin/adapters/{Esc(p.GetValue(name)!)}/promote",
            Body(new { version = p.GetValue(version), reason = p.GetValue(reason) }),
            (json, o) => o.WriteLine($"{Text(json, "adapter")}@{Text(json, "version")} is now {Text(json, "state")}"), ct));

        var rollback = new Command("rollback", "End a canary, or return production to the previous (or a named) version.") { name, optionalVersion, reason };
        rollback.SetAction((p, ct) => CallAsync(p, c, HttpMethod.Post, $"admin/adapters/{Esc(p.GetValue(name)!)}/rollback",
            Body(new { version = p.GetValue(optionalVersion), reason = p.GetValue(reason) }),
            (json, o) => o.WriteLine($"{Text(json, "adapter")}@{Text(json, "version")} serves the alias ({Text(json, "state")})"), ct));

        var command = new Command("adapters", "Adapters and their versions: list, show, promote, roll back.") { list, show, promote, rollback };
        c.AddTo(command);
        return command;
    }

    private Command Pipelines()
    {
        var c = new Connection();
        var name = new Argument<string>("adapter") { Description = "The adapter the pipeline retrains." };
        var file = new Argument<string>("file") { Description = "Pipeline definition (JSON; its 'adapter', if present, must match)." };

        var list = new Command("list", "Pipelines, whether they are paused, their schedules.");
        list.SetAction((p, ct) => CallAsync(p, c, HttpMethod.Get, "admin/pipelines", null, (json, o) =>
        {
            var table = new TextTable("ADAPTER", "STATUS", "CRON", "PROMOTION", "REVISION", "UPDATED", "BY");
            foreach (var r in Items(json))
            {
                var def = r.GetProperty("definition");
                string? cron = def.TryGetProperty("schedule", out var s) && s.ValueKind == JsonValueKind.Object ? Text(s, "cron") : null;
                table.Add(Text(r, "adapter"), r.TryGetProperty("paused", out var paused) && paused.ValueKind == JsonValueKind.True ? "paused" : "active",
                    cron, Text(def, "promotion"), Text(r, "revision"), Time(r, "updated_at"), Text(r, "updated_by"));
            }
            Write(o, table, "No pipelines are defined.");
        }, ct));

        var show = new Command("show", "A pipeline's definition and its next scheduled run.") { name };
        show.SetAction((p, ct) => CallAsync(p, c, HttpMethod.Get, $"admin/pipelines/{Esc(p.GetValue(name)!)}", null, (json, o) =>
        {
            var record = json.GetProperty("pipeline");
            o.WriteLine($"pipeline: {Text(record, "adapter")} ({(record.TryGetProperty("paused", out var paused) && paused.ValueKind == JsonValueKind.True ? "paused" : "active")}, revision {Text(record, "revision")}, updated {Time(record, "updated_at")} by {Text(record, "updated_by") ?? "-"})");
            o.WriteLine($"next run: {Time(json, "next_run") ?? "- (not scheduled here)"}");
            o.WriteLine(JsonSerializer.Serialize(record.GetProperty("definition"), Indented));
        }, ct));

        var put = new Command("put", "Create or replace a pipeline from a JSON file.") { name, file };
        put.Aliases.Add("set");
        put.SetAction(async (p, ct) =>
        {
            string path = p.GetValue(file)!;
            string body;
            try
            {
                body = await File.ReadAllTextAsync(path, ct);
                using var _ = JsonDocument.Parse(body);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException)
            {
                // A local mistake: nothing is sent.
                await p.InvocationConfiguration.Error.WriteLineAsync($"error: cannot use '{path}' as a pipeline definition: {ex.Message}");
                return (int)CliExitCode.Usage;
            }
            return await CallAsync(p, c, HttpMethod.Put, $"admin/pipelines/{Esc(p.GetValue(name)!)}", body,
                (json, o) => o.WriteLine($"pipeline {Text(json, "adapter")} saved (revision {Text(json, "revision")})"), ct);
        });

        Command Toggle(string verb, string description, string done)
        {
            var command = new Command(verb, description) { name };
            command.SetAction((p, ct) => CallAsync(p, c, HttpMethod.Post, $"admin/pipelines/{Esc(p.GetValue(name)!)}/{verb}", "{}",
                (json, o) => o.WriteLine($"pipeline {Text(json, "adapter")} {done} (revision {Text(json, "revision")})"), ct));
            return command;
        }

        var run = new Command("run", "Run a pipeline now (the controller picks the request up).") { name };
        run.SetAction((p, ct) => CallAsync(p, c, HttpMethod.Post, $"admin/pipelines/{Esc(p.GetValue(name)!)}/run", "{}",
            (json, o) => o.WriteLine($"run of {p.GetValue(name)} {Text(json, "status") ?? "requested"}"), ct));

        var limit = new Option<int>("--limit") { Description = "How many steps, newest first.", DefaultValueFactory = _ => 30 };
        var jobs = new Command("jobs", "Recent pipeline steps (curate, train, evaluate, canary).") { name, limit };
        jobs.SetAction((p, ct) => CallAsync(p, c, HttpMethod.Get, $"admin/jobs?adapter={Esc(p.GetValue(name)!)}&limit={p.GetValue(limit)}", null, (json, o) =>
        {
            var table = new TextTable("STARTED", "RUN", "STEP", "STATUS", "VERSION", "MESSAGE");
            foreach (var j in Items(json))
                table.Add(Time(j, "started_at"), Text(j, "run_id"), Text(j, "step"), Text(j, "status"), Text(j, "version"), Text(j, "message"));
            Write(o, table, "No pipeline steps recorded.");
        }, ct));

        var command = new Command("pipelines", "Retraining pipelines: list, show, put, pause, resume, run now, job history.")
        {
            list, show, put,
            Toggle("pause", "Stop scheduled and triggered runs (a running canary stays guarded).", "paused"),
            Toggle("resume", "Resume scheduled and triggered runs.", "resumed"),
            run, jobs,
        };
        c.AddTo(command);
        return command;
    }

    private Command Approvals()
    {
        var c = new Connection();
        var id = new Argument<string>("id") { Description = "Approval id (from 'tunegw approvals list')." };
        var comment = new Option<string?>("--comment") { Description = "Kept in the audit trail." };
        var status = new Option<string>("--status") { Description = "pending, approved, rejected, expired or all.", DefaultValueFactory = _ => "pending" };
        var adapter = new Option<string?>("--adapter") { Description = "Only this adapter's approvals." };

        var list = new Command("list", "Promotions waiting for an operator (or, with --status, resolved ones).") { status, adapter };
        list.SetAction((p, ct) => CallAsync(p, c, HttpMethod.Get,
            $"admin/approvals?status={Esc(p.GetValue(status)!)}" + (p.GetValue(adapter) is { } a ? $"&adapter={Esc(a)}" : ""), null, (json, o) =>
            {
                var table = new TextTable("ID", "ACTION", "ADAPTER", "VERSION", "STATUS", "CREATED", "RESOLVED BY");
                foreach (var item in Items(json))
                    table.Add(Text(item, "id"), Text(item, "action"), Text(item, "adapter"), Text(item, "version"), Text(item, "status"), Time(item, "created_at"), Text(item, "resolved_by"));
                Write(o, table, $"No {p.GetValue(status)} approvals.");
            }, ct));

        Command Resolve(string verb, bool approve)
        {
            var command = new Command(verb, approve ? "Approve a pending action (usually: promote the canary)." : "Reject a pending action (usually: roll the canary back).") { id, comment };
            command.SetAction((p, ct) => CallAsync(p, c, HttpMethod.Post, $"admin/approvals/{Esc(p.GetValue(id)!)}",
                Body(new { approve, comment = p.GetValue(comment) }),
                (json, o) => o.WriteLine($"{Text(json, "adapter")}@{Text(json, "version")}: {Text(json, "action")} {Text(json, "status")}"), ct));
            return command;
        }

        var command = new Command("approvals", "Pending approvals: list, approve, reject.") { list, Resolve("approve", true), Resolve("reject", false) };
        c.AddTo(command);
        return command;
    }

    /// <summary>Calls the server and prints its answer (a table, or its JSON with --json); failures go to stderr.</summary>
    private async Task<int> CallAsync(ParseResult parse, Connection c, HttpMethod method, string path, string? body, Action<JsonElement, TextWriter> print,
        CancellationToken cancellationToken)
    {
        var output = parse.InvocationConfiguration.Output;
        var error = parse.InvocationConfiguration.Error;
        string url = parse.GetValue(c.Url) ?? (environment(UrlVariable) is { Length: > 0 } fromEnvironment ? fromEnvironment : DefaultUrl);
        if (!Uri.TryCreate(url.TrimEnd('/') + "/", UriKind.Absolute, out var baseAddress) || baseAddress.Scheme is not ("http" or "https"))
        {
            await error.WriteLineAsync($"error: '{url}' is not an http(s) URL (--url or {UrlVariable}).");
            return (int)CliExitCode.Usage;
        }
        double timeout = parse.GetValue(c.Timeout);
        if (timeout <= 0 || double.IsNaN(timeout))
        {
            await error.WriteLineAsync("error: --timeout must be a positive number of seconds.");
            return (int)CliExitCode.Usage;
        }
        string? key = parse.GetValue(c.Key) ?? (environment(KeyVariable) is { Length: > 0 } envKey ? envKey : null);

        var response = await OperatorClient.SendAsync(new OperatorConnection(baseAddress, key, TimeSpan.FromSeconds(timeout)), method, path, body, cancellationToken);
        if (!response.Ok)
        {
            await error.WriteLineAsync($"error: {response.Error}");
            return (int)response.Code;
        }
        if (response.Body is not { } json) return (int)CliExitCode.Ok;
        if (parse.GetValue(c.Json)) await output.WriteLineAsync(JsonSerializer.Serialize(json, Indented));
        else print(json, output);
        return (int)CliExitCode.Ok;
    }

    private static string Body(object value) => JsonSerializer.Serialize(value);

    private static IEnumerable<JsonElement> Items(JsonElement json) =>
        json.TryGetProperty("data", out var data) && data.ValueKind == JsonValueKind.Array ? data.EnumerateArray() : [];

    private static void Write(TextWriter output, TextTable table, string whenEmpty)
    {
        if (table.Count == 0) output.WriteLine(whenEmpty);
        else table.WriteTo(output);
    }

    /// <summary>A scalar property as text (strings as they are, numbers and booleans in JSON form); null when absent.</summary>
    private static string? Text(JsonElement e, string name) =>
        !e.TryGetProperty(name, out var v) ? null
        : v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => v.GetRawText(),
            _ => null,
        };

    private static double? Number(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;

    private static string? Time(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && v.TryGetDateTimeOffset(out var t)
            ? t.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture) : null;

    /// <summary>The alias's arms, e.g. <c>support-bot@v1 90 %, support-bot@v2 10 %</c>.</summary>
    private static string? Routing(JsonElement e) =>
        e.TryGetProperty("alias", out var alias) && alias.ValueKind == JsonValueKind.Object && alias.TryGetProperty("arms", out var arms) && arms.ValueKind == JsonValueKind.Array
            ? string.Join(", ", arms.EnumerateArray().Select(a => $"{Text(a, "model")} {(Number(a, "weight") ?? 0).ToString("P0", CultureInfo.InvariantCulture)}"))
            : null;

    private static string Esc(string s) => Uri.EscapeDataString(s);
}
