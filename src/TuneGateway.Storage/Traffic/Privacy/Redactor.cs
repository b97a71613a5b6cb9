using System.Buffers;
using System.Text.RegularExpressions;

namespace TuneGateway.Storage;

/// <summary>
/// Replaces personal data in free text with placeholders before it is stored: e-mail addresses
/// (<c>[EMAIL]</c>), card-like numbers that pass the Luhn check (<c>[CARD]</c>), phone numbers
/// (<c>[PHONE]</c>) and custom patterns from configuration, in that order.
/// </summary>
/// <remarks>
/// Phone numbers are recognised when they are written with separators (<c>555-123-4567</c>,
/// <c>(555) 123 4567</c>, <c>+44 20 7946 0958</c>) and have 9-15 digits, or 7-15 digits with a leading
/// <c>+</c> or a bracketed area code; a bare run of digits without <c>+</c> is ambiguous and left alone.
/// If a pattern exceeds its time limit the whole text is replaced by <c>[REDACTED]</c>: failing closed is
/// preferred to storing text that may not have been redacted.
/// </remarks>
public sealed partial class Redactor
{
    /// <summary>Placeholder for e-mail addresses.</summary>
    public const string EmailPlaceholder = "[EMAIL]";

    /// <summary>Placeholder for phone numbers.</summary>
    public const string PhonePlaceholder = "[PHONE]";

    /// <summary>Placeholder for card numbers.</summary>
    public const string CardPlaceholder = "[CARD]";

    /// <summary>What replaces a whole text when redaction could not finish.</summary>
    public const string FailedPlaceholder = "[REDACTED]";

    private const int BuiltInTimeoutMs = 1000;

    private static readonly SearchValues<char> CardSeparators = SearchValues.Create(" -");
    private static readonly SearchValues<char> PhoneSeparators = SearchValues.Create(" .-()+");

    private readonly List<(Regex Pattern, MatchEvaluator Evaluator, Func<string, bool> MayMatch)> _steps = [];

    /// <summary>Builds a redactor from options.</summary>
    /// <exception cref="ArgumentException">A custom pattern is not a valid regular expression.</exception>
    public Redactor(RedactionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!options.Enabled)
        {
            return;
        }

        if (options.Emails)
        {
            _steps.Add((EmailPattern(), static _ => EmailPlaceholder, static text => text.Contains('@', StringComparison.Ordinal)));
        }

        if (options.CardNumbers)
        {
            _steps.Add((CardPattern(), static m => PassesLuhn(m.ValueSpan) ? CardPlaceholder : m.Value, static text => HasDigitGroup(text, 13, CardSeparators)));
        }

        if (options.PhoneNumbers)
        {
            _steps.Add((PhonePattern(), static m => LooksLikePhone(m.ValueSpan) ? PhonePlaceholder : m.Value, static text => HasDigitGroup(text, 7, PhoneSeparators)));
        }

        foreach (var rule in options.Rules)
        {
            var regexOptions = RegexOptions.CultureInvariant | (rule.IgnoreCase ? RegexOptions.IgnoreCase : RegexOptions.None);
            var placeholder = rule.Placeholder;
            _steps.Add((new Regex(rule.Pattern, regexOptions, options.MatchTimeout), _ => placeholder, static _ => true));
        }
    }

    /// <summary>Whether the redactor changes anything at all.</summary>
    public bool IsEnabled => _steps.Count > 0;

    /// <summary>Redacts <paramref name="text"/>; returns the same instance when nothing matched.</summary>
    public string? Redact(string? text)
    {
        if (string.IsNullOrEmpty(text) || _steps.Count == 0)
        {
            return text;
        }

        try
        {
            foreach (var (pattern, evaluator, mayMatch) in _steps)
            {
                // The cheap vectorised pre-checks skip the regex for the common text without '@' or digits.
                if (mayMatch(text))
                {
                    text = pattern.Replace(text, evaluator);
                }
            }

            return text;
        }
        catch (RegexMatchTimeoutException)
        {
            return FailedPlaceholder;
        }
    }

    /// <summary>The Luhn checksum over the digits of <paramref name="text"/> (other characters are ignored).</summary>
    public static bool PassesLuhn(ReadOnlySpan<char> text)
    {
        var sum = 0;
        var digits = 0;
        for (var i = text.Length - 1; i >= 0; i--)
        {
            var c = text[i];
            if (c is < '0' or > '9')
            {
                continue;
            }

            var d = c - '0';
            if (digits % 2 == 1)
            {
                d *= 2;
                if (d > 9)
                {
                    d -= 9;
                }
            }

            sum += d;
            digits++;
        }

        return digits > 0 && sum % 10 == 0;
    }

    /// <summary>
    /// Whether the text has a group of at least <paramref name="minimum"/> digits joined only by separator
    /// characters: a cheap, conservative test that lets prose without such groups skip a pattern.
    /// </summary>
    private static bool HasDigitGroup(string text, int minimum, SearchValues<char> separators)
    {
        var span = text.AsSpan();
        var start = span.IndexOfAnyInRange('0', '9');
        while (start >= 0)
        {
            var digits = 0;
            var end = start;
            while (end < span.Length)
            {
                var c = span[end];
                if (char.IsAsciiDigit(c))
                {
                    digits++;
                }
                else if (!separators.Contains(c))
                {
                    break;
                }

                end++;
            }

            if (digits >= minimum)
            {
                return true;
            }

            var next = span[end..].IndexOfAnyInRange('0', '9');
            start = next < 0 ? -1 : end + next;
        }

        return false;
    }

    private static bool LooksLikePhone(ReadOnlySpan<char> candidate)
    {
        var digits = 0;
        foreach (var c in candidate)
        {
            if (c is >= '0' and <= '9')
            {
                digits++;
            }
        }

        var marked = candidate.StartsWith("+") || candidate.Contains('(');
        return digits is >= 9 and <= 15 || (marked && digits is >= 7 and <= 15);
    }

    // Local part (starting where a run of local-part characters starts, so each run is scanned once), '@',
    // then dot-separated labels; the labels are separated by a literal dot, so matching is linear.
    [GeneratedRegex(@"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+", RegexOptions.CultureInvariant, BuiltInTimeoutMs)]
    private static partial Regex EmailPattern();

    // 13-19 digits, optionally grouped by single spaces or dashes, not part of a longer number.
    [GeneratedRegex(@"(?<![\d\-])\d(?:[ \-]?\d){12,18}(?!\d)", RegexOptions.CultureInvariant, BuiltInTimeoutMs)]
    private static partial Regex CardPattern();

    // Optional +country code, optional (area code), then digit groups joined by space, dot or dash.
    [GeneratedRegex(@"(?<![\w+])(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d{2,4}(?:[ .\-]\d{2,4}){0,4}[ .\-]?\d{3,4}(?!\w)", RegexOptions.CultureInvariant, BuiltInTimeoutMs)]
    private static partial Regex PhonePattern();
}
