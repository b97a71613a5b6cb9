using Microsoft.Playwright;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Tests.Dashboard;

/// <summary>The serve host with a seeded lifecycle, and headless Chromium, shared by the dashboard tests.</summary>
public sealed class DashboardFixture : IAsyncLifetime
{
    public LifecycleServeHost Host { get; private set; } = null!;
    public HeadlessChromium Chromium { get; private set; } = null!;
    public Approval PendingApproval { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        // The page polls and redraws: give web-first assertions room on a busy two-core machine.
        Assertions.SetDefaultExpectTimeout(20_000);
        Chromium = await HeadlessChromium.LaunchAsync();
        Host = await LifecycleServeHost.StartAsync();
        PendingApproval = await Host.SeedCanaryAwaitingApprovalAsync();
    }

    public async Task DisposeAsync()
    {
        if (Chromium is not null) await Chromium.DisposeAsync();
        if (Host is not null) await Host.DisposeAsync();
    }
}
