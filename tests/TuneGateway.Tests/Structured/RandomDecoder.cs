using System.Text.Json.Nodes;
using Json.Schema;
using TorchSharp;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Structured;
using TuneGateway.Engine.Tokenization;

namespace TuneGateway.Tests.Structured;

/// <summary>
/// A stand-in for a model with random weights: random logits every step, through the real
/// sampler with the grammar's mask, over a real vocabulary. Closing tokens and end-of-sequence get
/// a bias so that outputs finish within a test's step budget; the bias only makes finishing likely,
/// the mask alone decides what is allowed.
/// </summary>
internal sealed class RandomDecoder(HfTokenizer tokenizer, StructuredOutputs outputs, int seed)
{
    private readonly Random _random = new(seed);
    private readonly float[] _bias = Bias(tokenizer, outputs.Vocabulary);

    public sealed record Result(IReadOnlyList<int> Ids, bool EndedWithEos, bool Complete, string Text);

    public Result Run(CompiledGrammar grammar, int maxSteps, bool useSampler = false)
    {
        var state = grammar.Start();
        var ids = new List<int>();
        var eos = outputs.Vocabulary.EosIds;
        for (int step = 0; step < maxSteps; step++)
        {
            var mask = state.AllowedTokens();
            Assert.True(mask.Count > 0, "A mask is never empty.");
            int token = useSampler ? SampleWithSampler(mask) : Pick(mask);
            Assert.True(mask[token], $"Token {token} was picked outside the mask.");
            if (eos.Contains(token))
            {
                bool complete = state.IsComplete;
                return new Result(ids, true, complete, tokenizer.Decode(ids, skipSpecialTokens: true));
            }
            state.Accept(token);
            Assert.False(state.IsDead, $"An allowed token ({token}) led to a dead state.");
            ids.Add(token);
        }
        return new Result(ids, false, state.IsComplete, tokenizer.Decode(ids, skipSpecialTokens: true));
    }

    private int Pick(TokenMask mask)
    {
        int best = -1;
        double bestScore = double.NegativeInfinity;
        foreach (int id in mask.Ids())
        {
            double score = Gaussian() * 2 + (id < _bias.Length ? _bias[id] : 0);
            if (score > bestScore) (best, bestScore) = (id, score);
        }
        return best;
    }

    private int SampleWithSampler(TokenMask mask)
    {
        using var scope = torch.NewDisposeScope();
        var logits = new float[outputs.Vocabulary.Size];
        for (int i = 0; i < logits.Length; i++) logits[i] = (float)(Gaussian() * 2) + (i < _bias.Length ? _bias[i] : 0);
        var tensor = torch.tensor(logits).reshape(1, logits.Length);
        var row = new RowSampling(Temperature: 1.0, TopK: 0, TopP: 1.0, TopLogprobs: 0, Uniform: _random.NextDouble()) { Allowed = mask };
        return Sampler.Sample(tensor, [row])[0].TokenId;
    }

    private double Gaussian() => Math.Sqrt(-2 * Math.Log(1 - _random.NextDouble())) * Math.Cos(2 * Math.PI * _random.NextDouble());

    private static float[] Bias(HfTokenizer tokenizer, TokenVocabulary vocabulary)
    {
        var bias = new float[vocabulary.Size];
        for (int id = 0; id < bias.Length; id++)
        {
            if (vocabulary.EosIds.Contains(id)) bias[id] = 6;
            else if (vocabulary.Bytes(id) is [(byte)'"' or (byte)'}' or (byte)']' or (byte)'0' or (byte)'1' or (byte)'t' or (byte)'n']) bias[id] = 4;
        }
        return bias;
    }

    /// <summary>The independent check: JsonSchema.Net's verdict on the text.</summary>
    public static void AssertValid(string schemaText, string output)
    {
        var schema = JsonSchema.FromText(schemaText);
        JsonNode? instance;
        try
        {
            instance = JsonNode.Parse(output);
        }
        catch (System.Text.Json.JsonException ex)
        {
            throw new Xunit.Sdk.XunitException($"Not JSON ({ex.Message}): {output}");
        }
        var result = schema.Evaluate(instance, new EvaluationOptions { OutputFormat = OutputFormat.List });
        Assert.True(result.IsValid, $"Output does not validate against {schemaText}: {output}\n" +
            string.Join("\n", (result.Details ?? []).Where(d => d.Errors is not null).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Key} {e.Value}"))));
    }
}
