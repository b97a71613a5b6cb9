using Microsoft.Extensions.Options;
using TuneGateway.Storage;

namespace TuneGateway.Tests.Storage;

/// <summary>The feedback endpoint's service over the embedded store.</summary>
public sealed class FeedbackServiceTests : IDisposable
{
    private readonly TempDirectory _directory = new();
    private readonly List<IDisposable> _disposables = [];

    public void Dispose()
    {
        _disposables.ForEach(d => d.Dispose());
        _directory.Dispose();
    }

    [Fact]
    public async Task FeedbackIsStoredNormalisedAndRedacted()
    {
        var (service, store, _) = Create();
        var entry = Entries.Full(Entries.NewId(), "alpha", DateTimeOffset.UtcNow);
        await store.AppendAsync([entry]);

        var result = await service.SubmitAsync(new FeedbackRequest(entry.Id, Stars: 2, Correction: "Email me at jane@example.com", Comment: "Phone 555-123-4567"), "key-1");

        Assert.Equal(FeedbackStatus.Created, result.Status);
        Assert.Equal(201, result.StatusCode);
        var stored = (await store.GetAsync(entry.Id))!.Feedback!;
        Assert.Equal(2, stored.Rating);
        Assert.Equal(RatingScale.Stars, stored.Scale);
        Assert.Equal(-0.5, stored.Score);
        Assert.Equal("Email me at [EMAIL]", stored.Correction);
        Assert.Equal("Phone [PHONE]", stored.Comment);
        Assert.Equal("key-1", stored.ApiKeyId);

        var again = await service.SubmitAsync(new FeedbackRequest(entry.Id, Rating: 1), "key-1");
        Assert.Equal(FeedbackStatus.Updated, again.Status);
        Assert.Equal(200, again.StatusCode);
    }

    [Fact]
    public async Task BadRequestsAreInvalid()
    {
        var (service, store, _) = Create();
        var entry = Entries.Full(Entries.NewId(), "alpha", DateTimeOffset.UtcNow);
        await store.AppendAsync([entry]);

        var badRating = await service.SubmitAsync(new FeedbackRequest(entry.Id, 7), "key-1");
        var badId = await service.SubmitAsync(new FeedbackRequest("", 1), "key-1");
        var both = await service.SubmitAsync(new FeedbackRequest(entry.Id, Rating: 1, Stars: 1), "key-1");

        Assert.Equal(FeedbackStatus.Invalid, badRating.Status);
        Assert.Equal(400, badRating.StatusCode);
        Assert.NotNull(badRating.Error);
        Assert.Equal("rating", badRating.Param);
        Assert.Equal(FeedbackStatus.Invalid, badId.Status);
        Assert.Equal("id", badId.Param);
        Assert.Equal(("stars", FeedbackStatus.Invalid), (both.Param, both.Status));
        Assert.Null((await store.GetAsync(entry.Id))!.Feedback);
    }

    [Fact]
    public async Task FeedbackStoredUnderTheOldContractIsReadAsItWasStored()
    {
        // Lines the embedded store wrote before 'stars' existed: 'rating' with the 'scale' it was read on and its score.
        var (_, store, _) = Create();
        var t = DateTimeOffset.UtcNow.AddMinutes(-5);
        var oneStar = Entries.Full(Entries.NewId(), "alpha", t) with { Prompt = "one star" };
        var fourStars = Entries.Full(Entries.NewId(), "alpha", t) with { Prompt = "four stars" };
        var thumbsUp = Entries.Full(Entries.NewId(), "alpha", t) with { Prompt = "thumbs up" };
        await store.AppendAsync([oneStar, fourStars, thumbsUp]);
        store.Dispose();
        string feedbackLog = Directory.EnumerateFiles(_directory.Path, "feedback.jsonl", SearchOption.AllDirectories).Single();
        string at = t.ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        await File.AppendAllLinesAsync(feedbackLog,
        [
            $$$"""{"seq":1,"feedback":{"id":"{{{oneStar.Id}}}","adapter":"alpha","rating":1,"scale":"stars","score":-1,"created_at":"{{{at}}}","updated_at":"{{{at}}}"}}""",
            $$$"""{"seq":2,"feedback":{"id":"{{{fourStars.Id}}}","adapter":"alpha","rating":4,"scale":"stars","score":0.5,"created_at":"{{{at}}}","updated_at":"{{{at}}}"}}""",
            $$$"""{"seq":3,"feedback":{"id":"{{{thumbsUp.Id}}}","adapter":"alpha","rating":1,"scale":"thumbs","score":1,"created_at":"{{{at}}}","updated_at":"{{{at}}}"}}""",
        ]);

        var (_, reopened, _) = Create();
        var read = (await reopened.GetAsync(oneStar.Id))!.Feedback!;
        Assert.Equal((1, RatingScale.Stars, -1.0), (read.Rating, read.Scale, read.Score));
        Assert.Equal(0.5, (await reopened.GetAsync(fourStars.Id))!.Feedback!.Score);
        Assert.Equal(1.0, (await reopened.GetAsync(thumbsUp.Id))!.Feedback!.Score);

        // Curation reads the stored score: the old one-star record stays a negative.
        var pipeline = new TuneGateway.Controller.Pipelines.PipelineDefinition { Adapter = "alpha", Data = new TuneGateway.Controller.Pipelines.DataRules { MinExamples = 1 } };
        var data = await new TuneGateway.Controller.Pipelines.Curator(reopened).CurateAsync(pipeline, [], DateTimeOffset.UtcNow);
        Assert.Equal(["four stars", "thumbs up"], data.Train.Concat(data.Validation).Concat(data.Holdout).Select(e => e.Prompt).Order());
        Assert.Equal(1, data.Stats.DroppedLowScore);
    }

    [Fact]
    public async Task UnknownIdsAndOtherKeysRequestsAreNotFound()
    {
        var (service, store, _) = Create();
        var entry = Entries.Full(Entries.NewId(), "alpha", DateTimeOffset.UtcNow) with { ApiKeyId = "key-owner" };
        await store.AppendAsync([entry]);

        var unknown = await service.SubmitAsync(new FeedbackRequest(Entries.NewId(), 1), "key-owner");
        var foreign = await service.SubmitAsync(new FeedbackRequest(entry.Id, 1), "key-other");

        Assert.Equal(404, unknown.StatusCode);
        Assert.Equal(FeedbackStatus.NotFound, foreign.Status);
        Assert.Null((await store.GetAsync(entry.Id))!.Feedback);
    }

    [Fact]
    public async Task OptedOutKeysFeedbackIsAcceptedButNotStored()
    {
        var (service, store, _) = Create(o => o.OptOutApiKeyIds = ["key-private"]);
        var entry = Entries.Full(Entries.NewId(), "alpha", DateTimeOffset.UtcNow);
        await store.AppendAsync([entry]);

        var result = await service.SubmitAsync(new FeedbackRequest(entry.Id, 1), "key-private");

        Assert.Equal(FeedbackStatus.NotRecorded, result.Status);
        Assert.Equal(202, result.StatusCode);
        Assert.Null((await store.GetAsync(entry.Id))!.Feedback);
    }

    [Fact]
    public async Task ARequestAndItsFeedbackAreSampledAlike()
    {
        var (service, store, log) = Create(o => o.SampleRate = 0.5);
        await log.StartAsync(CancellationToken.None);
        var entries = Enumerable.Range(0, 200).Select(_ => Entries.Full(Entries.NewId(), "alpha", DateTimeOffset.UtcNow)).ToList();
        var decisions = entries.Select(log.Record).ToList();

        var results = new List<FeedbackResult>();
        foreach (var entry in entries)
        {
            results.Add(await service.SubmitAsync(new FeedbackRequest(entry.Id, 1), "key-1"));
        }

        for (var i = 0; i < entries.Count; i++)
        {
            var expected = decisions[i] == TrafficLogDecision.Accepted ? FeedbackStatus.Created : FeedbackStatus.NotRecorded;
            Assert.Equal(expected, results[i].Status);
        }

        Assert.Contains(decisions, d => d == TrafficLogDecision.SampledOut);
        Assert.Equal(decisions.Count(d => d == TrafficLogDecision.Accepted), (await store.CountFeedbackSinceAsync("alpha", null)).Count);
    }

    [Fact]
    public async Task FeedbackForARequestStillOnItsWayWaitsForIt()
    {
        var pending = new PendingLog();
        var (service, store, _) = Create(o => o.FeedbackPendingWait = TimeSpan.FromSeconds(60), pending);
        var entry = Entries.Full(Entries.NewId(), "alpha", DateTimeOffset.UtcNow);
        pending.Ids.Add(entry.Id);

        var submission = service.SubmitAsync(new FeedbackRequest(entry.Id, -1), "key-1");
        await store.AppendAsync([entry]);
        pending.Ids.Clear();

        Assert.Equal(FeedbackStatus.Created, (await submission).Status);
    }

    [Fact]
    public async Task FeedbackForARequestThatNeverArrivesIsNotFound()
    {
        var pending = new PendingLog();
        var (service, _, _) = Create(o => o.FeedbackPendingWait = TimeSpan.FromMilliseconds(100), pending);
        var id = Entries.NewId();
        pending.Ids.Add(id);

        Assert.Equal(FeedbackStatus.NotFound, (await service.SubmitAsync(new FeedbackRequest(id, 1), "key-1")).Status);
    }

    [Fact]
    public async Task AnUnreachableStoreIsReportedAsUnavailable()
    {
        var options = Options.Create(new TrafficLogOptions());
        var service = new FeedbackService(new FakeTrafficStore { Fail = true }, new TrafficPrivacyPolicy(options), options);

        var result = await service.SubmitAsync(new FeedbackRequest(Entries.NewId(), 1), "key-1");

        Assert.Equal(FeedbackStatus.Unavailable, result.Status);
        Assert.Equal(503, result.StatusCode);
    }

    private (FeedbackService Service, FileTrafficStore Store, TrafficLogWriter Log) Create(Action<TrafficLogOptions>? configure = null, ITrafficLog? log = null)
    {
        var value = new TrafficLogOptions { DataDirectory = _directory.Path };
        configure?.Invoke(value);
        var options = Options.Create(value);
        var policy = new TrafficPrivacyPolicy(options);
        var store = new FileTrafficStore(options);
        var writer = new TrafficLogWriter(store, options, policy);
        _disposables.Add(writer);
        _disposables.Add(store);
        return (new FeedbackService(store, policy, options, log ?? writer), store, writer);
    }

    /// <summary>A traffic log whose pending ids the test controls.</summary>
    private sealed class PendingLog : ITrafficLog
    {
        public ConcurrentSet Ids { get; } = new();

        public TrafficLogDecision Record(TrafficEntry entry) => throw new NotSupportedException();

        public bool IsPending(string id) => Ids.Contains(id);

        public TrafficLogStatistics GetStatistics() => throw new NotSupportedException();

        public sealed class ConcurrentSet
        {
            private readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> _items = new();

            public void Add(string id) => _items[id] = 0;

            public bool Contains(string id) => _items.ContainsKey(id);

            public void Clear() => _items.Clear();
        }
    }
}
