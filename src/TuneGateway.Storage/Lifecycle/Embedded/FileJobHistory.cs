namespace TuneGateway.Storage.Lifecycle.Embedded;

/// <summary>The embedded job history, the newest <see cref="JobHistoryLimit"/> steps.</summary>
internal sealed class FileJobHistory(LifecycleFile file) : IJobHistory
{
    private const int JobHistoryLimit = 5000;

    public Task RecordAsync(JobRun run, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            int at = file.State.Jobs.FindIndex(j => j.RunId == run.RunId && j.Step == run.Step);
            if (at >= 0) file.State.Jobs[at] = run;
            else file.State.Jobs.Add(run);
            if (file.State.Jobs.Count > JobHistoryLimit) file.State.Jobs.RemoveRange(0, file.State.Jobs.Count - JobHistoryLimit);
            file.Save();
        }
        return Task.CompletedTask;
    }

    Task<IReadOnlyList<JobRun>> IJobHistory.ListAsync(string? adapter, int limit, CancellationToken cancellationToken)
    {
        lock (file.Lock)
        {
            return Task.FromResult<IReadOnlyList<JobRun>>(file.State.Jobs
                .Where(j => adapter is null || j.Adapter == adapter)
                .OrderByDescending(j => j.StartedAt).Take(Math.Clamp(limit, 1, 10_000)).ToArray());
        }
    }
}
