using System.Diagnostics;
using System.Text;
using System.Text.Json;
using TorchSharp;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Structured;

namespace TuneGateway.Cli.Bench;

/// <summary>
/// The cost of constrained decoding per step at a 150k-token vocabulary: masks computed from
/// scratch at typical automaton states, masks served from the per-state cache, a whole constrained
/// decode (mask + accept per step), and the sampler's masked_fill over the batch. The vocabulary is
/// synthetic (no vocabulary that large is among the fixtures): every single byte, then word-like
/// byte-level pieces with and without a leading space, digits, punctuation runs and multi-byte
/// UTF-8, 1 to 12 bytes long, deterministic.
/// </summary>
internal static class StructuredBench
{
    private const int VocabularySize = 150_000;
    private const int Repeats = 5;

    private const string Schema = """
        {"type":"object","properties":{
          "name":{"type":"string"},"age":{"type":"integer"},"email":{"type":"string","maxLength":40},
          "tags":{"type":"array","items":{"enum":["new","vip","churned"]}},
          "address":{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":"string"}},"required":["city"],"additionalProperties":false}},
         "required":["name","age","address"],"additionalProperties":false}
        """;

    public static void Run(TextWriter output)
    {
        var watch = Stopwatch.StartNew();
        var vocabulary = SyntheticVocabulary(VocabularySize, seed: 7);
        double buildSeconds = watch.Elapsed.TotalSeconds;
        using var schema = JsonDocument.Parse(Schema);
        var part = new GrammarPart.Json(schema.RootElement.Clone());
        var cold = new StructuredOutputs(() => vocabulary, new StructuredOutputOptions { MaskCacheEntries = 0 }).Compile(part);
        var cached = new StructuredOutputs(() => vocabulary).Compile(part);

        output.WriteLine($"Constrained decoding masks: synthetic byte-level vocabulary of {VocabularySize:N0} tokens (built and put in a prefix tree in {buildSeconds:F1} s); median of {Repeats}; 2 cores shared with other work.");
        output.WriteLine();
        var table = new BenchTable(output, "state", "prefix", "allowed tokens", "mask from scratch ms", "mask from cache µs");
        foreach (var (label, prefix) in new[]
        {
            ("start", ""), ("object key", "{\"na"), ("string value", "{\"name\": \"Ada Lo"), ("integer", "{\"name\": \"Ada\", \"age\": 4"),
            ("after a value", "{\"name\": \"Ada\", \"age\": 41"), ("enum in array", "{\"name\": \"Ada\", \"age\": 41, \"tags\": [\"v"),
            ("nested object", "{\"name\": \"Ada\", \"age\": 41, \"address\": {\"city\": \"Oslo\""),
        })
        {
            var coldState = cold.Start();
            coldState.AcceptText(prefix);
            var warmState = cached.Start();
            warmState.AcceptText(prefix);
            warmState.AllowedTokens();
            double scratch = Median(() => coldState.AllowedTokens());
            double hit = Median(() => warmState.AllowedTokens()) * 1000;
            table.Row(label, $"`{prefix.Replace("|", "\\|")}`", coldState.AllowedTokens().Count.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), scratch, hit);
        }
        output.WriteLine();
        DecodeTable(output, cached);
        output.WriteLine();
        SamplerTable(output);
    }

    /// <summary>A constrained decode of random tokens: what a row costs per step, cache warming as it goes.</summary>
    private static void DecodeTable(TextWriter output, CompiledGrammar grammar)
    {
        var random = new Random(11);
        var steps = new List<double>();
        var eos = grammar.Vocabulary.EosIds;
        for (int run = 0; run < 4; run++)
        {
            var state = grammar.Start();
            for (int step = 0; step < 150; step++)
            {
                long start = Stopwatch.GetTimestamp();
                var mask = state.AllowedTokens();
                double maskMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                // Prefer short tokens (as a model's closing tokens would), so that values end.
                var ids = mask.Ids().ToArray();
                var shortIds = ids.Where(id => eos.Contains(id) || grammar.Vocabulary.Bytes(id)!.Length <= 2).ToArray();
                int token = shortIds.Length > 0 && random.Next(3) > 0 ? shortIds[random.Next(shortIds.Length)] : ids[random.Next(ids.Length)];
                start = Stopwatch.GetTimestamp();
                if (!eos.Contains(token)) state.Accept(token);
                steps.Add(maskMs + Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                if (eos.Contains(token)) break;
            }
        }
        steps.Sort();
        var (hits, misses) = grammar.CacheCounts;
        output.WriteLine($"Constrained decode of random tokens, mask + accept per step, {steps.Count} steps over 4 outputs (cache shared, as between requests on one schema):");
        output.WriteLine();
        var table = new BenchTable(output, "steps", "p50 ms", "p90 ms", "p99 ms", "max ms", "cache hits", "masks computed");
        table.Row(steps.Count, Percentile(steps, 0.5), Percentile(steps, 0.9), Percentile(steps, 0.99), steps[^1], hits, misses);
    }

    /// <summary>The sampler's side: expanding the rows' masks and one masked_fill over [rows, vocabulary].</summary>
    private static void SamplerTable(TextWriter output)
    {
        output.WriteLine("Sampler with allowed-token masks (CPU tensors), median of 5: greedy rows, all constrained vs none:");
        output.WriteLine();
        var table = new BenchTable(output, "rows", "no masks ms", "masked ms");
        var mask = new TokenMask(VocabularySize);
        foreach (int rows in new[] { 1, 8, 32 })
        {
            using var logits = torch.randn(rows, VocabularySize);
            var plain = Enumerable.Range(0, rows).Select(_ => new RowSampling(0, 0, 1, 0, 0)).ToArray();
            var masked = plain.Select(r => r with { Allowed = mask }).ToArray();
            table.Row(rows, Median(() => Sampler.Sample(logits, plain)), Median(() => Sampler.Sample(logits, masked)));
        }
    }

    private static double Percentile(List<double> sorted, double p) => BenchHttp.Percentile([.. sorted], p);

    private static double Median(Action action)
    {
        action();
        var times = new double[Repeats];
        for (int i = 0; i < Repeats; i++)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        Array.Sort(times);
        return times[Repeats / 2];
    }

    /// <summary>Deterministic stand-in for a large byte-level BPE vocabulary; id 0 is end-of-sequence.</summary>
    internal static TokenVocabulary SyntheticVocabulary(int size, int seed)
    {
        var random = new Random(seed);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var tokens = new List<byte[]?> { null };
        for (int b = 0; b < 256; b++)
        {
            tokens.Add([(byte)b]);
            seen.Add(((char)b).ToString());
        }
        const string letters = "etaoinshrdlcumwfgypbvkjxqz";
        string[] extras = ["\", \"", "\": ", "{\"", "}}", "],", "  ", "\n    ", "0", "00", "19", "2024", "日本", "語", "é", "ü", "—"];
        while (tokens.Count < size)
        {
            var text = new StringBuilder();
            int kind = random.Next(10);
            if (kind < 7)
            {
                if (random.Next(2) == 0) text.Append(' ');
                int length = 1 + random.Next(Math.Min(11, 2 + random.Next(10)));
                for (int i = 0; i < length; i++) text.Append(letters[Math.Min(letters.Length - 1, (int)(random.NextDouble() * random.NextDouble() * letters.Length))]);
                if (random.Next(8) == 0) text[text.Length > 1 && text[0] == ' ' ? 1 : 0] = char.ToUpperInvariant(text[text.Length > 1 && text[0] == ' ' ? 1 : 0]);
            }
            else if (kind == 7)
            {
                for (int i = 0, n = 1 + random.Next(4); i < n; i++) text.Append((char)('0' + random.Next(10)));
            }
            else
            {
                for (int i = 0, n = 1 + random.Next(3); i < n; i++) text.Append(extras[random.Next(extras.Length)]);
            }
            string token = text.ToString();
            if (seen.Add(token)) tokens.Add(Encoding.UTF8.GetBytes(token));
        }
        return TokenVocabulary.FromBytes(tokens, eosIds: [0]);
    }
}
