using System.Text.Json;
using TuneGateway.Storage;

namespace TuneGateway.Tests.Storage;

/// <summary>The shapes the HTTP endpoints read and write with ASP.NET Core's web JSON defaults.</summary>
public sealed class StorageJsonTests
{
    [Fact]
    public void TheFeedbackBodyBindsFromTheApiShape()
    {
        const string body = """{"id":"chatcmpl-1","rating":-1,"correction":"Say no.","comment":"wrong"}""";

        var request = JsonSerializer.Deserialize<FeedbackRequest>(body, JsonSerializerOptions.Web);

        Assert.Equal(new FeedbackRequest("chatcmpl-1", -1, "Say no.", "wrong"), request);
        Assert.Equal(new FeedbackRequest("chatcmpl-2", Stars: 4), JsonSerializer.Deserialize<FeedbackRequest>("""{"id":"chatcmpl-2","stars":4}""", JsonSerializerOptions.Web));
        // The retired field still binds, so that it can be refused by name.
        var old = JsonSerializer.Deserialize<FeedbackRequest>("""{"id":"chatcmpl-3","rating":1,"scale":"stars"}""", JsonSerializerOptions.Web)!;
        Assert.False(FeedbackRating.TryNormalize(old, out _, out string? param, out _));
        Assert.Equal("scale", param);
    }

    [Fact]
    public void ATrafficPageSerialisesPositionsAsCursorStrings()
    {
        var entry = Entries.Full("chatcmpl-1");
        var page = new TrafficPage([new TrafficRecord(new LogPosition(1741953600000, 2), entry, null)], "1741953600000-2");

        using var json = JsonDocument.Parse(JsonSerializer.Serialize(page, JsonSerializerOptions.Web));

        var item = json.RootElement.GetProperty("items")[0];
        Assert.Equal("1741953600000-2", item.GetProperty("position").GetString());
        Assert.Equal(json.RootElement.GetProperty("nextCursor").GetString(), item.GetProperty("position").GetString());
        Assert.Equal("chatcmpl-1", item.GetProperty("entry").GetProperty("id").GetString());
        Assert.False(item.GetProperty("entry").TryGetProperty("streamName", out _));
        Assert.Equal(page.Items[0].Position, JsonSerializer.Deserialize<TrafficPage>(json.RootElement.GetRawText(), JsonSerializerOptions.Web)!.Items[0].Position);
    }

    [Fact]
    public void AFeedbackResultCarriesNoStatusCodeInItsBody()
    {
        var result = new FeedbackResult(FeedbackStatus.NotFound, Error: "No logged request has id 'x'.");

        var json = JsonSerializer.Serialize(result, JsonSerializerOptions.Web);

        Assert.DoesNotContain("statusCode", json, StringComparison.Ordinal);
        Assert.Contains("\"status\":\"not_found\"", json, StringComparison.Ordinal);
    }
}
