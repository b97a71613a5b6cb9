using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using TuneGateway.Gateway.Dashboard;
using TuneGateway.Tests.Server;
using static Microsoft.Playwright.Assertions;

namespace TuneGateway.Tests.Dashboard;

/// <summary>
/// The operator dashboard end to end in headless Chromium against a real <c>serve</c> host:
/// sign in with a key, see the canary's live A/B numbers, approve the pending promotion with a
/// comment, and watch the routing move to the candidate; the same checked through the API and the
/// audit trail. Also the refused-key paths and the security headers of the dashboard's files.
/// </summary>
public sealed class DashboardTests(DashboardFixture fixture) : IClassFixture<DashboardFixture>
{
    private const string Comment = "A/B looks good, ship it";
    private static readonly string Candidate = $"{LifecycleServeHost.Adapter}@v2";
    private static readonly string Control = $"{LifecycleServeHost.Adapter}@v1";

    private LifecycleServeHost Host => fixture.Host;

    [Fact]
    public async Task OperatorApprovesTheCanaryAndTheRoutingMovesToTheCandidate()
    {
        await using var context = await fixture.Chromium.Browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 900 } });
        var page = await context.NewPageAsync();
        var problems = WatchForProblems(page);

        var response = await page.GotoAsync(Host.BaseUrl + "/dashboard/");
        Assert.NotNull(response);
        Assert.Equal(DashboardEndpoints.ContentSecurityPolicy, await response!.HeaderValueAsync("content-security-policy"));

        // Sign in.
        await page.GetByLabel("API key").FillAsync(LifecycleServeHost.OperatorKey);
        await page.GetByTestId("login-submit").ClickAsync();
        await Expect(page.GetByTestId("session-name")).ToHaveTextAsync("operator");
        await Expect(page.GetByTestId("login")).ToBeHiddenAsync();

        // Overview: the adapter with production v1 and canary v2, one approval pending.
        var row = page.GetByTestId("adapter-row").Filter(new() { HasText = LifecycleServeHost.Adapter });
        await Expect(row).ToContainTextAsync("v1");
        await Expect(row).ToContainTextAsync("v2");
        await Expect(page.GetByTestId("count-pending")).ToHaveTextAsync("1");

        // Adapter detail: 90/10 routing, the live A/B numbers, lineage and drift.
        await row.GetByTestId("adapter-link").ClickAsync();
        await ExpectRoutingAsync(page, (Control, "90 %"), (Candidate, "10 %"));
        await Expect(page.GetByTestId("canary-candidate")).ToHaveTextAsync("v2");
        await Expect(page.GetByTestId("verdict-decision")).ToHaveTextAsync("candidate better");
        await Expect(page.GetByTestId("ab-requests")).ToContainTextAsync("9,000");
        await Expect(page.GetByTestId("ab-requests")).ToContainTextAsync("1,000");
        await Expect(page.GetByTestId("ab-errors")).ToContainTextAsync("0.5 %");
        await Expect(page.GetByTestId("ab-feedback")).ToContainTextAsync("35 %");
        await Expect(page.GetByTestId("ab-feedback")).ToContainTextAsync("45 %");
        var requestPoints = page.GetByTestId("chart-requests").Locator("svg circle");
        await Expect(requestPoints).ToHaveCountAsync(2);

        // The controller looks again: the page picks the new verdict up within a poll and charts both.
        await Host.AdvanceCanaryAsync(requestsPerArmUnit: 1200, TimeSpan.FromHours(7));
        await Expect(page.GetByTestId("ab-requests")).ToContainTextAsync("10,800");
        await Expect(requestPoints).ToHaveCountAsync(4);
        await Expect(page.GetByTestId("chart-feedback").Locator("svg polyline")).ToHaveCountAsync(2);
        await Expect(page.GetByTestId("chart-psi").Locator("svg polyline")).ToHaveCountAsync(2);
        await Expect(page.GetByTestId("drift-alarms")).ToContainTextAsync("psi prompt_tokens");
        var v2Row = page.GetByTestId("version-row").And(page.Locator("[data-version='v2']"));
        await Expect(v2Row.GetByTestId("version-state")).ToHaveTextAsync("canary");
        await Expect(v2Row).ToContainTextAsync("v1"); // its parent

        // Approve with a comment.
        await page.GetByTestId("nav-approvals").ClickAsync();
        var approval = page.GetByTestId("approval").And(page.Locator($"[data-id='{fixture.PendingApproval.Id}']"));
        await Expect(approval).ToContainTextAsync("candidate better");
        await approval.GetByLabel("Comment").FillAsync(Comment);
        await approval.GetByTestId("approve").ClickAsync();
        await Expect(page.GetByTestId("approval-result")).ToContainTextAsync($"now routes to {Candidate} 100 %");
        await Expect(page.GetByTestId("no-approvals")).ToBeVisibleAsync();
        await Expect(page.GetByTestId("recent-approval").First).ToContainTextAsync(Comment);

        // The routing on the adapter's page: all traffic on the candidate, which is now production.
        await page.GetByTestId("approval-result-link").ClickAsync();
        await ExpectRoutingAsync(page, (Candidate, "100 %"));
        await Expect(v2Row.GetByTestId("version-state")).ToHaveTextAsync("production");
        await Expect(page.GetByTestId("version-row").And(page.Locator("[data-version='v1']")).GetByTestId("version-state")).ToHaveTextAsync("retired");
        await Expect(page.GetByTestId("no-canary")).ToBeVisibleAsync();

        // The audit trail names the key and keeps the comment.
        await page.GetByTestId("nav-audit").ClickAsync();
        var resolved = page.Locator("[data-testid='audit-row'][data-action='approval.resolve']");
        await Expect(resolved).ToHaveCountAsync(1);
        await Expect(resolved.GetByTestId("audit-actor")).ToHaveTextAsync("key:operator");
        await Expect(resolved.GetByTestId("audit-reason")).ToHaveTextAsync(Comment);

        Assert.Empty(problems);

        // The same through the API.
        using var http = Client(LifecycleServeHost.OperatorKey);
        using var detail = await GetJsonAsync(http, $"/admin/adapters/{LifecycleServeHost.Adapter}");
        var arms = detail.RootElement.GetProperty("alias").GetProperty("arms").EnumerateArray().ToArray();
        var arm = Assert.Single(arms);
        Assert.Equal(Candidate, arm.GetProperty("model").GetString());
        Assert.Equal(1.0, arm.GetProperty("weight").GetDouble());
        Assert.Equal(JsonValueKind.Null, detail.RootElement.GetProperty("canary").ValueKind);

        using var audit = await GetJsonAsync(http, $"/admin/audit?adapter={LifecycleServeHost.Adapter}&limit=1000");
        var events = audit.RootElement.GetProperty("data").EnumerateArray().ToArray();
        var resolveEvent = Assert.Single(events, e => e.GetProperty("action").GetString() == "approval.resolve");
        Assert.Equal("key:operator", resolveEvent.GetProperty("actor").GetString());
        Assert.Equal(Comment, resolveEvent.GetProperty("reason").GetString());
        Assert.Equal("approved", resolveEvent.GetProperty("to").GetString());
        Assert.Contains(events, e => e.GetProperty("action").GetString() == "alias.set" && e.GetProperty("actor").GetString() == "key:operator"
            && e.GetProperty("to").GetString()!.StartsWith(Candidate + " 100", StringComparison.Ordinal));

        using var approvals = await GetJsonAsync(http, "/admin/approvals?status=all");
        var decided = Assert.Single(approvals.RootElement.GetProperty("data").EnumerateArray(), a => a.GetProperty("id").GetString() == fixture.PendingApproval.Id);
        Assert.Equal("key:operator", decided.GetProperty("resolved_by").GetString());
        Assert.Equal(Comment, decided.GetProperty("comment").GetString());

        // Requests for the alias now reach the promoted version, a real adapter the worker serves from the artifact directory.
        for (int i = 0; i < 5; i++)
        {
            using var completion = await http.PostAsync("/v1/completions", new StringContent(
                JsonSerializer.Serialize(new { model = LifecycleServeHost.Adapter, prompt = "hello", max_tokens = 2, temperature = 0, user = $"user-{i}" }),
                System.Text.Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, completion.StatusCode);
            Assert.Equal(Candidate, completion.Headers.GetValues("X-TuneGateway-Arm").Single());
        }
    }

    [Fact]
    public async Task AWrongKeyIsRefusedWithAClearMessage()
    {
        await using var context = await fixture.Chromium.Browser.NewContextAsync();
        var page = await context.NewPageAsync();
        await page.GotoAsync(Host.BaseUrl + "/dashboard/");

        await page.GetByLabel("API key").FillAsync("sk-not-a-key");
        await page.GetByTestId("login-submit").ClickAsync();
        await Expect(page.GetByTestId("login-error")).ToContainTextAsync("not accepted (401 Unauthorized)");
        await Expect(page.Locator("#nav")).ToBeHiddenAsync();
        Assert.Null(await page.EvaluateAsync<string?>("() => sessionStorage.getItem('tunegw.dashboard.key')"));

        // A valid key without an operator or mlops role.
        await page.GetByLabel("API key").FillAsync(LifecycleServeHost.InferenceKey);
        await page.GetByTestId("login-submit").ClickAsync();
        await Expect(page.GetByTestId("login-error")).ToContainTextAsync("403 Forbidden");
        await Expect(page.Locator("#nav")).ToBeHiddenAsync();

        // An mlops key signs in (it may read, and the approve buttons are disabled for it).
        await page.GetByLabel("API key").FillAsync(LifecycleServeHost.MlopsKey);
        await page.GetByTestId("login-submit").ClickAsync();
        await Expect(page.GetByTestId("session-name")).ToHaveTextAsync("mlops");
    }

    [Fact]
    public async Task DashboardFilesAreServedAnonymouslyWithAStrictPolicy()
    {
        using var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(Host.BaseUrl) };

        using var redirect = await http.GetAsync("/dashboard");
        Assert.Equal(HttpStatusCode.Redirect, redirect.StatusCode);
        Assert.Equal("/dashboard/", redirect.Headers.Location?.OriginalString);

        foreach (var (path, type) in new[] { ("/dashboard/", "text/html"), ("/dashboard/js/app.js", "text/javascript"), ("/dashboard/dashboard.css", "text/css") })
        {
            using var response = await http.GetAsync(path);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(type, response.Content.Headers.ContentType?.MediaType);
            Assert.Equal(DashboardEndpoints.ContentSecurityPolicy, string.Join("; ", response.Headers.GetValues("Content-Security-Policy")));
            Assert.Equal("nosniff", Assert.Single(response.Headers.GetValues("X-Content-Type-Options")));

            using var again = new HttpRequestMessage(HttpMethod.Get, path);
            again.Headers.IfNoneMatch.Add(response.Headers.ETag!);
            using var cached = await http.SendAsync(again);
            Assert.Equal(HttpStatusCode.NotModified, cached.StatusCode);
        }

        // No inline script or style anywhere, no handler attributes: the policy forbids them.
        string html = await http.GetStringAsync("/dashboard/");
        Assert.DoesNotMatch(new Regex(@"<script(?![^>]*\bsrc=)[^>]*>", RegexOptions.IgnoreCase), html);
        Assert.DoesNotMatch(new Regex(@"\son[a-z]+\s*=|<style|\sstyle\s*=", RegexOptions.IgnoreCase), html);

        using var missing = await http.GetAsync("/dashboard/nope.js");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);

        // The data is not anonymous.
        using var anonymous = await http.GetAsync("/admin/adapters");
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        using var operatorClient = Client(LifecycleServeHost.OperatorKey);
        using var whoami = await GetJsonAsync(operatorClient, "/admin/whoami");
        Assert.Equal("operator", whoami.RootElement.GetProperty("name").GetString());
        Assert.Equal(["operator"], whoami.RootElement.GetProperty("roles").EnumerateArray().Select(r => r.GetString()));
        using var inference = Client(LifecycleServeHost.InferenceKey);
        using var forbidden = await inference.GetAsync("/admin/whoami");
        Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
    }

    private static async Task ExpectRoutingAsync(IPage page, params (string Model, string Weight)[] arms)
    {
        var rows = page.GetByTestId("route-arm");
        await Expect(rows).ToHaveCountAsync(arms.Length);
        foreach (var (model, weight) in arms)
            await Expect(rows.And(page.Locator($"[data-model='{model}']")).GetByTestId("route-weight")).ToHaveTextAsync(weight);
    }

    /// <summary>Console errors (CSP violations land there), uncaught exceptions, and failed dashboard requests.</summary>
    private static List<string> WatchForProblems(IPage page)
    {
        var problems = new List<string>();
        page.Console += (_, message) =>
        {
            if (message.Type == "error") lock (problems) problems.Add($"console: {message.Text}");
        };
        page.PageError += (_, error) => { lock (problems) problems.Add($"page error: {error}"); };
        page.RequestFailed += (_, request) =>
        {
            // Polls cut short by leaving a section are expected.
            if (request.Failure?.Contains("ERR_ABORTED", StringComparison.Ordinal) != true) lock (problems) problems.Add($"request failed: {request.Url} {request.Failure}");
        };
        return problems;
    }

    private HttpClient Client(string key)
    {
        var http = new HttpClient { BaseAddress = new Uri(Host.BaseUrl), Timeout = ServerTestHost.Patience };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    private static async Task<JsonDocument> GetJsonAsync(HttpClient http, string path)
    {
        using var response = await http.GetAsync(path);
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"GET {path}: {(int)response.StatusCode} {body}");
        return JsonDocument.Parse(body);
    }
}
