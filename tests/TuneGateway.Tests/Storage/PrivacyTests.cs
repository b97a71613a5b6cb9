using Microsoft.Extensions.Options;
using TuneGateway.Storage;

namespace TuneGateway.Tests.Storage;

/// <summary>Redaction, sampling and rating normalisation.</summary>
public sealed class PrivacyTests
{
    private static readonly Redactor Default = new(new RedactionOptions());

    [Theory]
    [InlineData("write to jane.doe+spam@mail.example.co.uk today", "write to [EMAIL] today")]
    [InlineData("a@b.io, c_d@e-f.org.", "[EMAIL], [EMAIL].")]
    [InlineData("call 555-123-4567 now", "call [PHONE] now")]
    [InlineData("call (555) 123-4567", "call [PHONE]")]
    [InlineData("ring +44 20 7946 0958 or +14155552671", "ring [PHONE] or [PHONE]")]
    [InlineData("020 7946 0958", "[PHONE]")]
    [InlineData("card 4111 1111 1111 1111 ok", "card [CARD] ok")]
    [InlineData("card 4111-1111-1111-1111", "card [CARD]")]
    [InlineData("amex 378282246310005", "amex [CARD]")]
    public void PersonalDataIsReplacedByPlaceholders(string text, string expected) =>
        Assert.Equal(expected, Default.Redact(text));

    [Theory]
    [InlineData("order 4111 1111 1111 1112 failed")]
    [InlineData("on 2024-01-15 at 10:30")]
    [InlineData("version 1.2.3 on 192.168.1.100")]
    [InlineData("it costs 1 000 000 dollars")]
    [InlineData("id 4155552671 is a plain number")]
    [InlineData("user@localhost has no domain")]
    [InlineData("")]
    public void OrdinaryTextIsLeftAlone(string text) =>
        Assert.Equal(text, Default.Redact(text));

    [Fact]
    public void LuhnChecksCardNumbers()
    {
        Assert.True(Redactor.PassesLuhn("4111111111111111"));
        Assert.True(Redactor.PassesLuhn("5500 0000 0000 0004"));
        Assert.False(Redactor.PassesLuhn("4111111111111112"));
        Assert.False(Redactor.PassesLuhn(""));
    }

    [Fact]
    public void CustomRulesApplyAfterTheBuiltInOnes()
    {
        var options = new RedactionOptions();
        options.Rules.Add(new RedactionRule { Pattern = @"\bACME-\d{6}\b", Placeholder = "[ACCOUNT]" });
        options.Rules.Add(new RedactionRule { Pattern = "project falcon", Placeholder = "[CODENAME]", IgnoreCase = true });
        var redactor = new Redactor(options);

        Assert.Equal(
            "account [ACCOUNT] of [EMAIL] on [CODENAME]",
            redactor.Redact("account ACME-123456 of boss@acme.com on Project Falcon"));
    }

    [Fact]
    public void BuiltInRulesCanBeSwitchedOff()
    {
        var emailsOnly = new Redactor(new RedactionOptions { PhoneNumbers = false, CardNumbers = false });
        var disabled = new Redactor(new RedactionOptions { Enabled = false });
        const string text = "a@b.io 555-123-4567 4111111111111111";

        Assert.Equal("[EMAIL] 555-123-4567 4111111111111111", emailsOnly.Redact(text));
        Assert.Equal(text, disabled.Redact(text));
        Assert.False(disabled.IsEnabled);
    }

    [Fact]
    public void AMatchTimeoutRedactsTheWholeText()
    {
        var options = new RedactionOptions { MatchTimeout = TimeSpan.FromMilliseconds(1) };
        options.Rules.Add(new RedactionRule { Pattern = "(a+)+$" });
        var redactor = new Redactor(options);

        Assert.Equal(Redactor.FailedPlaceholder, redactor.Redact(new string('a', 5000) + "!"));
    }

    [Fact]
    public void ThePolicyRedactsFreeTextAndKeepsIdentifiers()
    {
        var policy = new TrafficPrivacyPolicy(Options.Create(new TrafficLogOptions()));
        var entry = Entries.Full("chatcmpl-1") with
        {
            User = "jane@example.com",
            Prompt = "I am jane@example.com",
            Completion = "Call 555-123-4567",
            Error = "card 4111111111111111 declined",
        };

        var prepared = policy.Prepare(entry);

        Assert.Equal(entry with { User = "[EMAIL]", Prompt = "I am [EMAIL]", Completion = "Call [PHONE]", Error = "card [CARD] declined" }, prepared);
    }

    [Fact]
    public void SamplingIsAFunctionOfTheIdAndTheRate()
    {
        var ids = Enumerable.Range(0, 20_000).Select(i => $"chatcmpl-{i}").ToList();

        var atThirty = ids.Where(id => TrafficSampler.IsSampled(id, 0.3)).ToList();

        Assert.InRange(atThirty.Count / (double)ids.Count, 0.28, 0.32);
        Assert.Equal(atThirty, ids.Where(id => TrafficSampler.IsSampled(id, 0.3)));
        Assert.All(atThirty, id => Assert.True(TrafficSampler.IsSampled(id, 0.5)));
        Assert.All(ids, id => Assert.True(TrafficSampler.IsSampled(id, 1)));
        Assert.All(ids, id => Assert.False(TrafficSampler.IsSampled(id, 0)));
    }

    [Fact]
    public void SamplingDoesNotDependOnTheProcess()
    {
        // Expectations computed by an independent implementation (FNV-1a 64 over UTF-16 code units, then the
        // MurmurHash3 finaliser, top 53 bits): unlike string.GetHashCode, the value must never change.
        Assert.Equal(0.7486882849806127, TrafficSampler.UnitInterval("chatcmpl-abc"), 12);
        Assert.Equal(0.43169731262816824, TrafficSampler.UnitInterval("chatcmpl-0"), 12);
        Assert.Equal(0.3056413017973548, TrafficSampler.UnitInterval("chatcmpl-ünï"), 12);
    }

    [Theory]
    [InlineData(1, null, RatingScale.Thumbs, 1.0)]
    [InlineData(0, null, RatingScale.Thumbs, 0.0)]
    [InlineData(-1, null, RatingScale.Thumbs, -1.0)]
    [InlineData(null, 1, RatingScale.Stars, -1.0)]
    [InlineData(null, 2, RatingScale.Stars, -0.5)]
    [InlineData(null, 3, RatingScale.Stars, 0.0)]
    [InlineData(null, 5, RatingScale.Stars, 1.0)]
    public void RatingsMapOntoTheCommonScale(int? rating, int? stars, RatingScale expectedScale, double expectedScore)
    {
        Assert.True(FeedbackRating.TryNormalize(new FeedbackRequest("chatcmpl-1", rating, Stars: stars), out var normalized, out var param, out var error));
        Assert.Equal((expectedScale, rating ?? stars!.Value, expectedScore), (normalized.Scale, normalized.Value, normalized.Score));
        Assert.Null(param);
        Assert.Null(error);
    }

    [Theory]
    [InlineData(2, null, "rating")]
    [InlineData(5, null, "rating")]
    [InlineData(-2, null, "rating")]
    [InlineData(null, 0, "stars")]
    [InlineData(null, 6, "stars")]
    [InlineData(1, 1, "stars")]
    [InlineData(null, null, "rating")]
    public void InvalidOrAmbiguousRatingsAreRejectedNamingTheField(int? rating, int? stars, string field)
    {
        Assert.False(FeedbackRating.TryNormalize(new FeedbackRequest("chatcmpl-1", rating, Stars: stars), out _, out var param, out var error));
        Assert.Equal(field, param);
        Assert.NotNull(error);
    }
}
