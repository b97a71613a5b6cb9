using System.Text;
using TuneGateway.Engine.Tokenization;

namespace TuneGateway.Engine.Serving;

/// <summary>
/// Detokenizes a sequence as it grows and watches for stop strings. Text that could still turn
/// out to be the start of a stop string is held back (at most the longest stop's length minus
/// one character), so a client never receives part of a stop string; when one completes, the
/// text before it is released (with the stop string when asked for) and generation ends. Stop
/// strings are looked for only from the <c>minTokens</c>-th token on.
/// </summary>
public sealed class StopStringTextStream : ITextStream
{
    private readonly IncrementalDecoder _decoder;
    private readonly string[] _stops;
    private readonly int _holdBack;
    private readonly StringBuilder _text = new();
    private readonly int _minTokens;
    private readonly bool _includeStop;
    private int _released;
    private int _tokens;

    public StopStringTextStream(IncrementalDecoder decoder, IReadOnlyList<string> stops, int minTokens = 0, bool includeStop = false)
    {
        _minTokens = minTokens;
        _includeStop = includeStop;
        _decoder = decoder;
        _stops = stops.Where(s => s.Length > 0).Distinct().ToArray();
        _holdBack = _stops.Length == 0 ? 0 : _stops.Max(s => s.Length) - 1;
    }

    public TextStep Append(int tokenId)
    {
        int searchFrom = Math.Max(_released, _text.Length - _holdBack);
        _text.Append(_decoder.Append(tokenId));
        _tokens++;
        if (_stops.Length > 0 && _tokens >= _minTokens)
        {
            string window = _text.ToString(searchFrom, _text.Length - searchFrom);
            int best = -1;
            string? matched = null;
            foreach (string stop in _stops)
            {
                int at = window.IndexOf(stop, StringComparison.Ordinal);
                if (at >= 0 && (best < 0 || at < best))
                {
                    best = at;
                    matched = stop;
                }
            }
            if (matched is not null)
            {
                string before = Release(searchFrom + best + (_includeStop ? matched.Length : 0));
                _released = _text.Length; // nothing after the stop string is ever released
                return new TextStep(before, true, matched);
            }
        }
        return new TextStep(Release(_text.Length - _holdBack), false);
    }

    public string Finish()
    {
        _text.Append(_decoder.Flush());
        return Release(_text.Length);
    }

    private string Release(int upTo)
    {
        // Never split a surrogate pair across two releases.
        if (upTo > _released && upTo < _text.Length && char.IsLowSurrogate(_text[upTo])) upTo--;
        if (upTo <= _released) return "";
        string text = _text.ToString(_released, upTo - _released);
        _released = upTo;
        return text;
    }
}
