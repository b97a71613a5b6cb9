using Microsoft.Playwright;

namespace TuneGateway.Tests.Dashboard;

/// <summary>
/// Debian's Chromium driven by Playwright, headless. Playwright's own browser download is never
/// used: the browser is the system package (<c>apt-get install chromium</c>), found at
/// <c>/usr/bin/chromium</c> or where <c>TUNEGW_CHROMIUM</c> points.
/// </summary>
public sealed class HeadlessChromium : IAsyncDisposable
{
    public const string DefaultPath = "/usr/bin/chromium";

    private static readonly string[] Args =
    [
        "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
    ];

    private readonly IPlaywright _playwright;

    private HeadlessChromium(IPlaywright playwright, IBrowser browser)
    {
        _playwright = playwright;
        Browser = browser;
    }

    public IBrowser Browser { get; }

    public static string ExecutablePath => Environment.GetEnvironmentVariable("TUNEGW_CHROMIUM") is { Length: > 0 } path ? path : DefaultPath;

    /// <summary>Starts the browser; fails (never skips) when Chromium is not installed.</summary>
    public static async Task<HeadlessChromium> LaunchAsync()
    {
        string path = ExecutablePath;
        if (!File.Exists(path))
        {
            throw new InvalidOperationException(
                $"Chromium was not found at {path}. The dashboard's end-to-end test needs Debian's browser: run `apt-get install -y chromium` " +
                "(or set TUNEGW_CHROMIUM to a Chromium binary). Do not run `playwright install`.");
        }
        var playwright = await Playwright.CreateAsync();
        try
        {
            var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = path,
                Headless = true,
                Args = Args,
                Timeout = 60_000,
            });
            return new HeadlessChromium(playwright, browser);
        }
        catch
        {
            playwright.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Browser.DisposeAsync();
        _playwright.Dispose();
    }
}
