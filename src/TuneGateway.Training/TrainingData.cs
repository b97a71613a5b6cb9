using System.Security.Cryptography;
using System.Text.Json;
using TuneGateway.Engine.Chat;
using TuneGateway.Engine.Tokenization;

namespace TuneGateway.Training;

/// <summary>One tokenized example: the loss covers <see cref="Ids"/> from <see cref="CompletionStart"/> on.</summary>
public sealed record TokenizedExample(int[] Ids, int CompletionStart);

/// <summary>A prompt and the completion the model should learn to give.</summary>
public sealed record TrainingExample(string Prompt, string Completion);

/// <summary>
/// Training data in JSON Lines: <c>{"prompt", "completion"}</c>, or <c>{"messages": [...]}</c>
/// whose last message is the assistant's answer (rendered with the chat template; the loss
/// covers the answer as the template renders it, end-of-turn token included).
/// </summary>
public sealed class TrainingData
{
    private TrainingData(IReadOnlyList<TokenizedExample> examples, string sha256, int skipped)
    {
        Examples = examples;
        Sha256 = sha256;
        Skipped = skipped;
    }

    public IReadOnlyList<TokenizedExample> Examples { get; }
    /// <summary>SHA-256 of the data file, for lineage.</summary>
    public string Sha256 { get; }
    /// <summary>Examples dropped because they exceed the maximum length.</summary>
    public int Skipped { get; }

    public static TrainingData Load(string path, HfTokenizer tokenizer, ChatTemplate? template, int maxLength)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Training data '{path}' does not exist.", path);
        byte[] bytes = File.ReadAllBytes(path);
        var examples = new List<TokenizedExample>();
        int skipped = 0;
        int lineNumber = 0;
        foreach (string line in System.Text.Encoding.UTF8.GetString(bytes).Split('\n'))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            TokenizedExample example;
            try
            {
                using var doc = JsonDocument.Parse(line);
                example = Tokenize(doc.RootElement, tokenizer, template);
            }
            catch (JsonException ex)
            {
                throw new InvalidDataException($"'{path}' line {lineNumber}: not valid JSON ({ex.Message}).", ex);
            }
            catch (InvalidDataException ex)
            {
                throw new InvalidDataException($"'{path}' line {lineNumber}: {ex.Message}", ex);
            }
            if (example.Ids.Length > maxLength) { skipped++; continue; }
            examples.Add(example);
        }
        if (examples.Count == 0) throw new InvalidDataException($"'{path}' holds no usable examples ({skipped} longer than {maxLength} tokens).");
        return new TrainingData(examples, Convert.ToHexStringLower(SHA256.HashData(bytes)), skipped);
    }

    public static TrainingData FromExamples(IEnumerable<TrainingExample> examples, HfTokenizer tokenizer, int maxLength)
    {
        var list = new List<TokenizedExample>();
        int skipped = 0;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var e in examples)
        {
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes(JsonSerializer.Serialize(e) + "\n"));
            var t = Tokenize(e.Prompt, e.Completion, tokenizer);
            if (t.Ids.Length > maxLength) { skipped++; continue; }
            list.Add(t);
        }
        if (list.Count == 0) throw new InvalidDataException("No usable training examples.");
        return new TrainingData(list, Convert.ToHexStringLower(hash.GetHashAndReset()), skipped);
    }

    private static TokenizedExample Tokenize(JsonElement row, HfTokenizer tokenizer, ChatTemplate? template)
    {
        if (row.TryGetProperty("messages", out var messages))
        {
            if (template is null) throw new InvalidDataException("'messages' needs a chat template, and the model has none.");
            var list = messages.EnumerateArray().Select(m => new ChatMessage(
                m.GetProperty("role").GetString() ?? throw new InvalidDataException("a message has no role."),
                m.TryGetProperty("content", out var c) ? c.GetString() : null)).ToList();
            if (list.Count < 2 || list[^1].Role != "assistant")
                throw new InvalidDataException("'messages' must end with the assistant's answer.");
            string bos = tokenizer.BosTokenId is int b ? tokenizer.IdToToken(b) ?? "" : "";
            string eos = tokenizer.EosTokenId is int e ? tokenizer.IdToToken(e) ?? "" : "";
            string prompt = template.Render(list.Take(list.Count - 1).ToList(), addGenerationPrompt: true, bos, eos);
            string full = template.Render(list, addGenerationPrompt: false, bos, eos);
            if (!full.StartsWith(prompt, StringComparison.Ordinal))
                throw new InvalidDataException("the chat template renders the conversation without its generation prompt as a prefix; cannot separate the answer.");
            var promptIds = tokenizer.Encode(prompt, addSpecialTokens: false);
            var answerIds = tokenizer.Encode(full[prompt.Length..], addSpecialTokens: false);
            return new TokenizedExample([.. promptIds, .. answerIds], promptIds.Count);
        }
        string? p = row.TryGetProperty("prompt", out var pe) ? pe.GetString() : null;
        string? completion = row.TryGetProperty("completion", out var ce) ? ce.GetString() : null;
        if (p is null || completion is null) throw new InvalidDataException("expected {\"prompt\", \"completion\"} or {\"messages\": [...]}.");
        return Tokenize(p, completion, tokenizer);
    }

    /// <summary>prompt (with the tokenizer's special prefix, as serving encodes it) + completion + end of sequence.</summary>
    public static TokenizedExample Tokenize(string prompt, string completion, HfTokenizer tokenizer)
    {
        var promptIds = tokenizer.Encode(prompt, addSpecialTokens: true);
        var completionIds = tokenizer.Encode(completion, addSpecialTokens: false);
        int[] eos = tokenizer.EosTokenId is int e ? [e] : [];
        return new TokenizedExample([.. promptIds, .. completionIds, .. eos], promptIds.Count);
    }
}
