namespace TuneGateway.Engine.Structured;

// The automaton: a state is an immutable stack of frames, one per value being read (the innermost
// on top). A frame consumes one byte at a time; a container pushes a frame for each member value
// and is told, through AfterChild, when that value ended. Values such as numbers only end when the
// next byte cannot continue them, so a state steps nondeterministically: the top frame may take
// the byte, or, if its value can end here, the frame below takes it. A set of stacks carries the
// alternatives (anyOf branches, a key that may be declared or free); frames are records, so equal
// states compare equal and masks can be cached per state.

/// <summary>An immutable stack of frames: one automaton state.</summary>
internal sealed class FrameStack : IEquatable<FrameStack>
{
    private readonly int _hash;

    public FrameStack(GrammarFrame top, FrameStack? rest)
    {
        Top = top;
        Rest = rest;
        _hash = HashCode.Combine(top, rest?._hash ?? 0);
    }

    public GrammarFrame Top { get; }
    public FrameStack? Rest { get; }

    public bool Equals(FrameStack? other) =>
        other is not null && (ReferenceEquals(this, other) || (_hash == other._hash && Top.Equals(other.Top) && Equals(Rest, other.Rest)));

    public override bool Equals(object? obj) => Equals(obj as FrameStack);
    public override int GetHashCode() => _hash;

    /// <summary>This state with the top frame replaced (the same object when it did not change).</summary>
    public FrameStack With(GrammarFrame top) => ReferenceEquals(top, Top) ? this : new FrameStack(top, Rest);
}

/// <summary>Whitespace and nesting bounds, fixed per grammar.</summary>
internal sealed record AutomatonLimits(int MaxWhitespace, int MaxTrailingWhitespace, int MaxBeginDepth = 64);

/// <summary>How states move: one byte at a time, and when a value may begin.</summary>
internal static class Automaton
{
    /// <summary>Adds every state <paramref name="state"/> reaches on byte <paramref name="b"/>.</summary>
    public static void Step(FrameStack state, byte b, AutomatonLimits limits, List<FrameStack> output)
    {
        int before = output.Count;
        state.Top.Step(b, state, limits, output);
        // A value that has just ended and cannot go on, refused by its container (a duplicate free key),
        // is dead now: left for the next byte, its last byte would be allowed into a dead end.
        for (int i = output.Count - 1; i >= before; i--)
        {
            if (output[i].Top.IsFinal && output[i].Rest is { } container && container.Top.AfterChild(output[i].Top) is null) output.RemoveAt(i);
        }
        if (state.Top.CanEnd && state.Rest is { } parent && parent.Top.AfterChild(state.Top) is { } resumed)
            Step(parent.With(resumed), b, limits, output);
    }

    /// <summary>Whether the state may stop here: every open value can end and the root's value is read.</summary>
    public static bool Accepts(FrameStack state) => state.Top switch
    {
        RootFrame root => root.Done,
        var top => top.CanEnd && state.Rest is { } parent && parent.Top.AfterChild(top) is { } resumed && Accepts(parent.With(resumed)),
    };

    /// <summary>Begins a value of <paramref name="node"/> with its first byte, above <paramref name="parent"/>.</summary>
    public static void Begin(GrammarNode node, byte b, FrameStack parent, AutomatonLimits limits, List<FrameStack> output, int depth = 0)
    {
        // A $ref cycle that consumes nothing (anyOf: [{$ref: "#"}]) would loop forever.
        if (depth > limits.MaxBeginDepth) return;
        switch (node)
        {
            case ChoiceNode choice:
                foreach (var alternative in choice.Alternatives) Begin(alternative, b, parent, limits, output, depth + 1);
                break;
            case RefNode reference:
                Begin(reference.Target!, b, parent, limits, output, depth + 1);
                break;
            case SequenceNode sequence:
                Begin(sequence.Parts[0], b, new FrameStack(new SequenceFrame(sequence, 1), parent), limits, output, depth + 1);
                break;
            case RepeatNode repeat:
                Begin(repeat.Item, b, new FrameStack(new RepeatFrame(repeat, 1), parent), limits, output, depth + 1);
                break;
            default:
                var frame = StartFrame(node);
                frame.Step(b, new FrameStack(frame, parent), limits, output);
                break;
        }
    }

    private static GrammarFrame StartFrame(GrammarNode node) => node switch
    {
        LiteralNode literal => new LiteralFrame(literal.Root),
        StringNode s => new StringFrame(s, StringPhase.Start),
        NumberNode n => new NumberFrame(n, NumberPhase.Start),
        ObjectNode o => new ObjectFrame(o, ObjectPhase.Start),
        ArrayNode a => new ArrayFrame(a, ArrayPhase.Start),
        _ => throw new InvalidOperationException($"No frame for {node.GetType().Name}."),
    };

    public static bool IsWhitespace(byte b) => b is (byte)' ' or (byte)'\n' or (byte)'\t' or (byte)'\r';
}

/// <summary>One value being read.</summary>
internal abstract record GrammarFrame
{
    /// <summary>Consumes <paramref name="b"/>; adds each resulting state. <paramref name="self"/> is the stack this frame tops.</summary>
    public abstract void Step(byte b, FrameStack self, AutomatonLimits limits, List<FrameStack> output);

    /// <summary>Whether the value read so far is complete (the byte after it may belong to the parent).</summary>
    public virtual bool CanEnd => false;

    /// <summary>The value has ended and takes no more bytes.</summary>
    public virtual bool IsFinal => false;

    /// <summary>A container after its member value <paramref name="child"/> ended; null when that member is not acceptable.</summary>
    public virtual GrammarFrame? AfterChild(GrammarFrame child) => throw new InvalidOperationException($"{GetType().Name} has no members.");

    protected static void Emit(FrameStack self, GrammarFrame next, List<FrameStack> output) => output.Add(self.With(next));
}

/// <summary>The bottom of every stack: bounded whitespace, the one value, bounded trailing whitespace.</summary>
internal sealed record RootFrame(GrammarNode Value, bool Done, int Whitespace) : GrammarFrame
{
    public override void Step(byte b, FrameStack self, AutomatonLimits limits, List<FrameStack> output)
    {
        if (Automaton.IsWhitespace(b))
        {
            if (Whitespace < (Done ? limits.MaxTrailingWhitespace : limits.MaxWhitespace)) Emit(self, this with { Whitespace = Whitespace + 1 }, output);
            return;
        }
        if (!Done) Automaton.Begin(Value, b, self.With(this with { Done = true, Whitespace = 0 }), limits, output);
    }

    public override GrammarFrame? AfterChild(GrammarFrame child) => this;
}

/// <summary>Inside one of a set of literal strings.</summary>
internal sealed record LiteralFrame(LiteralTrie At) : GrammarFrame
{
    public override void Step(byte b, FrameStack self, AutomatonLimits limits, List<FrameStack> output)
    {
        if (At.Next(b) is { } next) Emit(self, new LiteralFrame(next), output);
    }

    public override bool CanEnd => At.IsEnd;
}

internal enum StringPhase { Start, Body, Escape, Hex, Utf8, Closed }

/// <summary>
/// Inside a JSON string: escapes, \u escapes (no surrogates, so every escape is one whole
/// character), and well-formed UTF-8 only (no overlong forms, no encoded surrogates), so multi-byte
/// characters split across tokens are checked byte by byte. <see cref="Count"/> counts characters
/// only when the node bounds them (capped), <see cref="Key"/> holds a free key's text.
/// </summary>
internal sealed record StringFrame(StringNode Node, StringPhase Phase, int Count = 0, int Pending = 0, int Hex = 0, byte Low = 0x80, byte High = 0xBF, string? Key = null) : GrammarFrame
{
    public override bool CanEnd => Phase == StringPhase.Closed;

    public override bool IsFinal => Phase == StringPhase.Closed;

    public override void Step(byte b, FrameStack self, AutomatonLimits limits, List<FrameStack> output)
    {
        if (Next(b) is { } next) Emit(self, next.Equals(this) ? this : next, output);
    }

    private StringFrame? Next(byte b)
    {
        switch (Phase)
        {
            case StringPhase.Start:
                return b == '"' ? this with { Phase = StringPhase.Body, Key = Node.IsFreeKey ? "" : null } : null;
            case StringPhase.Body:
                if (b == '"') return Count >= Node.MinLength ? this with { Phase = StringPhase.Closed } : null;
                if (Node.MaxLength is int max && Count >= max) return null;
                if (b == '\\') return Node.IsFreeKey ? null : this with { Phase = StringPhase.Escape };
                if (b < 0x20 || b == 0x7F && Node.AsciiOnly) return null;
                if (b < 0x80) return Counted(b);
                if (Node.AsciiOnly) return null;
                // A lead byte: how many continuation bytes follow, and the range of the first (RFC 3629's table).
                return b switch
                {
                    >= 0xC2 and <= 0xDF => Lead(b, 1, 0x80, 0xBF),
                    0xE0 => Lead(b, 2, 0xA0, 0xBF),
                    (>= 0xE1 and <= 0xEC) or 0xEE or 0xEF => Lead(b, 2, 0x80, 0xBF),
                    0xED => Lead(b, 2, 0x80, 0x9F),
                    0xF0 => Lead(b, 3, 0x90, 0xBF),
                    >= 0xF1 and <= 0xF3 => Lead(b, 3, 0x80, 0xBF),
                    0xF4 => Lead(b, 3, 0x80, 0x8F),
                    _ => null,
                };
            case StringPhase.Utf8:
                if (b < Low || b > High) return null;
                return this with { Phase = Pending == 1 ? StringPhase.Body : StringPhase.Utf8, Pending = Pending - 1, Low = 0x80, High = 0xBF, Key = Append(b) };
            case StringPhase.Escape:
                if (b == 'u') return Node.AsciiOnly ? null : this with { Phase = StringPhase.Hex, Pending = 4, Hex = 0 };
                bool simple = Node.AsciiOnly ? b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'n' or (byte)'t' : b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t';
                return simple ? Counted(null, StringPhase.Body) : null;
            case StringPhase.Hex:
                int digit = HexDigit(b);
                if (digit < 0) return null;
                int value = Hex * 16 + digit;
                // After two digits the high byte is known: D8 to DF would be a surrogate.
                if (Pending == 3 && value is >= 0xD8 and <= 0xDF) return null;
                return Pending == 1 ? Counted(null, StringPhase.Body) with { Hex = 0, Pending = 0 } : this with { Pending = Pending - 1, Hex = value };
            default:
                return null;
        }
    }

    private StringFrame Lead(byte b, int pending, byte low, byte high) =>
        Counted(b, StringPhase.Utf8) with { Pending = pending, Low = low, High = high };

    private StringFrame Counted(byte? b, StringPhase phase = StringPhase.Body) =>
        this with { Phase = phase, Count = Node.Counts ? Math.Min(Count + 1, Node.MaxLength ?? Node.MinLength) : 0, Key = b is { } k ? Append(k) : Key };

    private string? Append(byte b) => Key is null ? null : Key + (char)b;

    private static int HexDigit(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };

    /// <summary>The free key's text (its bytes were collected one char per byte).</summary>
    public string KeyText => System.Text.Encoding.UTF8.GetString(Key!.Select(c => (byte)c).ToArray());
}

internal enum NumberPhase { Start, Minus, Zero, Integer, Dot, Fraction }

/// <summary>Inside a JSON number: <c>-?(0|[1-9][0-9]*)(\.[0-9]+)?</c>, at most MaxDigits digits per part.</summary>
internal sealed record NumberFrame(NumberNode Node, NumberPhase Phase, int Digits = 0) : GrammarFrame
{
    public override bool CanEnd => Phase is NumberPhase.Zero or NumberPhase.Integer or NumberPhase.Fraction;

    public override void Step(byte b, FrameStack self, AutomatonLimits limits, List<FrameStack> output)
    {
        bool digit = b is >= (byte)'0' and <= (byte)'9';
        NumberFrame? next = Phase switch
        {
            NumberPhase.Start when b == '-' => this with { Phase = NumberPhase.Minus },
            NumberPhase.Start or NumberPhase.Minus when b == '0' => this with { Phase = NumberPhase.Zero, Digits = 1 },
            NumberPhase.Start or NumberPhase.Minus when digit => this with { Phase = NumberPhase.Integer, Digits = 1 },
            NumberPhase.Integer when digit && Digits < Node.MaxDigits => this with { Digits = Digits + 1 },
            NumberPhase.Zero or NumberPhase.Integer when b == '.' && !Node.Integer => this with { Phase = NumberPhase.Dot, Digits = 0 },
            NumberPhase.Dot when digit => this with { Phase = NumberPhase.Fraction, Digits = 1 },
            NumberPhase.Fraction when digit && Digits < Node.MaxDigits => this with { Digits = Digits + 1 },
            _ => null,
        };
        if (next is not null) Emit(self, next, output);
    }
}

/// <summary>
/// A JSON object or array: its opening byte and the bounded whitespace between its members are
/// read here, everything else by <see cref="StepMember"/> (on a copy with the whitespace run reset).
/// </summary>
internal abstract record ContainerFrame(int Whitespace) : GrammarFrame
{
    protected abstract byte Opening { get; }
    protected abstract bool AtStart { get; }
    /// <summary>Closed, or reading a member value (the member's frame is on top): takes no byte itself.</summary>
    protected abstract bool Busy { get; }
    protected abstract GrammarFrame Opened();
    protected abstract void StepMember(byte b, FrameStack self, AutomatonLimits limits, List<FrameStack> output);

    public sealed override void Step(byte b, FrameStack self, AutomatonLimits limits, List<FrameStack> output)
    {
        if (AtStart)
        {
            if (b == Opening) Emit(self, Opened(), output);
            return;
        }
        if (Busy) return;
        if (Automaton.IsWhitespace(b))
        {
            if (Whitespace < limits.MaxWhitespace) Emit(self, this with { Whitespace = Whitespace + 1 }, output);
            return;
        }
        (this with { Whitespace = 0 }).StepMember(b, self, limits, output);
    }
}

internal enum ObjectPhase { Start, Open, Key, Colon, Value, InValue, AfterValue, Closed }

/// <summary>
/// Inside a JSON object. <see cref="Next"/>: the first declared property not yet settled;
/// <see cref="Pending"/>: the property whose value comes next (-1: a free key's);
/// <see cref="FreeKeys"/>: free keys used so far, to refuse duplicates.
/// </summary>
internal sealed record ObjectFrame(ObjectNode Node, ObjectPhase Phase, int Next = 0, int Pending = -1, int Whitespace = 0, string FreeKeys = "") : ContainerFrame(Whitespace)
{
    public override bool CanEnd => Phase == ObjectPhase.Closed;

    protected override byte Opening => (byte)'{';
    protected override bool AtStart => Phase == ObjectPhase.Start;
    protected override bool Busy => Phase is ObjectPhase.Closed or ObjectPhase.InValue;
    protected override GrammarFrame Opened() => this with { Phase = ObjectPhase.Open };

    protected override void StepMember(byte b, FrameStack self, AutomatonLimits limits, List<FrameStack> output)
    {
        switch (Phase)
        {
            case ObjectPhase.Open or ObjectPhase.AfterValue when b == '}' && Node.RequiredDone(Next):
                Emit(self, this with { Phase = ObjectPhase.Closed }, output);
                break;
            case ObjectPhase.AfterValue when b == ',' && Node.MoreKeys(Next):
                Emit(self, this with { Phase = ObjectPhase.Key }, output);
                break;
            case ObjectPhase.Open or ObjectPhase.Key when b == '"':
                var waiting = self.With(this with { Phase = ObjectPhase.Colon });
                if (Node.KeysFrom[Next] is { } declared) Automaton.Begin(declared, b, waiting, limits, output);
                if (Node.Additional is not null) Automaton.Begin(Node.FreeKey, b, waiting, limits, output);
                break;
            case ObjectPhase.Colon when b == ':':
                Emit(self, this with { Phase = ObjectPhase.Value }, output);
                break;
            case ObjectPhase.Value:
                var value = Pending >= 0 ? Node.Properties[Pending].Value : Node.Additional!;
                Automaton.Begin(value, b, self.With(this with { Phase = ObjectPhase.InValue }), limits, output);
                break;
        }
    }

    public override GrammarFrame? AfterChild(GrammarFrame child)
    {
        if (Phase == ObjectPhase.InValue) return this with { Phase = ObjectPhase.AfterValue, Pending = -1 };
        // A key ended: a declared one (its tag is the property index) or a free one.
        if (child is LiteralFrame literal) return this with { Next = literal.At.Tag + 1, Pending = literal.At.Tag };
        string key = ((StringFrame)child).KeyText;
        string entry = key + "\0";
        if (Node.Names.Contains(key) || ("\0" + FreeKeys).Contains("\0" + entry, StringComparison.Ordinal)) return null;
        return this with { Pending = -1, FreeKeys = FreeKeys + entry };
    }
}

internal enum ArrayPhase { Start, Open, InValue, AfterValue, AfterComma, Closed }

/// <summary>Inside a JSON array; <see cref="Count"/> counts items up to the node's cap.</summary>
internal sealed record ArrayFrame(ArrayNode Node, ArrayPhase Phase, int Count = 0, int Whitespace = 0) : ContainerFrame(Whitespace)
{
    public override bool CanEnd => Phase == ArrayPhase.Closed;

    protected override byte Opening => (byte)'[';
    protected override bool AtStart => Phase == ArrayPhase.Start;
    protected override bool Busy => Phase is ArrayPhase.Closed or ArrayPhase.InValue;
    protected override GrammarFrame Opened() => this with { Phase = ArrayPhase.Open };

    protected override void StepMember(byte b, FrameStack self, AutomatonLimits limits, List<FrameStack> output)
    {
        bool full = Node.MaxItems is int max && Count >= max;
        if (b == ']' && Phase is ArrayPhase.Open or ArrayPhase.AfterValue && Count >= Node.MinItems)
            Emit(self, this with { Phase = ArrayPhase.Closed }, output);
        else if (b == ',' && Phase == ArrayPhase.AfterValue && !full)
            Emit(self, this with { Phase = ArrayPhase.AfterComma }, output);
        else if (Phase is ArrayPhase.Open or ArrayPhase.AfterComma && !full)
            Automaton.Begin(Node.Items, b, self.With(this with { Phase = ArrayPhase.InValue }), limits, output);
    }

    public override GrammarFrame? AfterChild(GrammarFrame child) =>
        this with { Phase = ArrayPhase.AfterValue, Count = Math.Min(Count + 1, Node.CountCap) };
}

/// <summary>Between the parts of a sequence: <see cref="Index"/> is the part that begins with the next byte.</summary>
internal sealed record SequenceFrame(SequenceNode Node, int Index) : GrammarFrame
{
    public override bool CanEnd => Index == Node.Parts.Count;

    public override void Step(byte b, FrameStack self, AutomatonLimits limits, List<FrameStack> output)
    {
        if (Index < Node.Parts.Count)
            Automaton.Begin(Node.Parts[Index], b, self.With(this with { Index = Index + 1 }), limits, output);
    }

    public override GrammarFrame? AfterChild(GrammarFrame child) => this;
}

/// <summary>After <see cref="Count"/> items of a repetition (capped when no bound is left to check).</summary>
internal sealed record RepeatFrame(RepeatNode Node, int Count) : GrammarFrame
{
    public override bool CanEnd => Count >= Node.Min;

    public override void Step(byte b, FrameStack self, AutomatonLimits limits, List<FrameStack> output)
    {
        if (Node.Max is int max && Count >= max) return;
        Automaton.Begin(Node.SeparatorThenItem, b, self.With(this with { Count = Math.Min(Count + 1, Math.Max(Node.CountCap, 1)) }), limits, output);
    }

    public override GrammarFrame? AfterChild(GrammarFrame child) => this;
}
