using System.Text.Json;

namespace TuneGateway.Engine.Tokenization;

/// <summary>
/// What <c>post_processor</c> adds around the encoded text when special tokens are requested, for
/// a single sequence: a list of fixed special-token ids and the sequence itself.
/// </summary>
/// <remarks>
/// HF's processors also compute offsets and type ids; only the ids matter here. <c>ByteLevel</c>
/// (it only trims offsets) adds nothing; <c>Sequence</c> applies its processors in order.
/// </remarks>
internal sealed class PostProcessor
{
    /// <summary>The template: an item is either special ids or <see langword="null"/> for the sequence.</summary>
    private readonly IReadOnlyList<int[]?> _items;

    private PostProcessor(IReadOnlyList<int[]?> items) => _items = items;

    /// <summary>Adds nothing.</summary>
    public static PostProcessor Identity { get; } = new([null]);

    /// <summary>The ids written before the sequence.</summary>
    public IEnumerable<int> Prefix => _items.TakeWhile(i => i is not null).SelectMany(i => i!);

    /// <summary>The ids written after the sequence.</summary>
    public IEnumerable<int> Suffix => _items.Reverse().TakeWhile(i => i is not null).Reverse().SelectMany(i => i!);

    /// <summary>Wraps the encoded ids in the template.</summary>
    public List<int> Apply(IReadOnlyList<int> ids)
    {
        var result = new List<int>(ids.Count + 4);
        foreach (int[]? item in _items)
        {
            if (item is null)
            {
                result.AddRange(ids);
            }
            else
            {
                result.AddRange(item);
            }
        }

        return result;
    }

    /// <summary>
    /// Applies a tokenizer_config <c>add_bos_token</c>/<c>add_eos_token</c> setting the way
    /// transformers' Llama-style fast tokenizers do: the flag, when given, decides whether the
    /// template starts with BOS (ends with EOS), whatever <c>post_processor</c> said.
    /// </summary>
    public PostProcessor WithBosEos(bool? addBos, int? bosId, bool? addEos, int? eosId)
    {
        var items = _items.ToList();
        if (addBos is { } bos && bosId is { } bosValue)
        {
            bool has = items.Count > 0 && items[0] is [var first] && first == bosValue;
            if (bos && !has)
            {
                items.Insert(0, [bosValue]);
            }
            else if (!bos && has)
            {
                items.RemoveAt(0);
            }
        }

        if (addEos is { } eos && eosId is { } eosValue)
        {
            bool has = items.Count > 0 && items[^1] is [var last] && last == eosValue;
            if (eos && !has)
            {
                items.Add([eosValue]);
            }
            else if (!eos && has)
            {
                items.RemoveAt(items.Count - 1);
            }
        }

        return new PostProcessor(items);
    }

    /// <summary>Builds the processor described at <paramref name="path"/> (identity when absent).</summary>
    public static PostProcessor FromJson(JsonElement? element, string path, JsonFields json)
    {
        if (element is not { } config)
        {
            return Identity;
        }

        string type = json.RequireType(config, path);
        switch (type)
        {
            case "ByteLevel":
                return Identity;
            case "TemplateProcessing":
                return FromTemplate(config, path, json);
            case "RobertaProcessing":
            case "BertProcessing":
                return new PostProcessor([[ReadTokenPair(config, "cls", path, json)], null, [ReadTokenPair(config, "sep", path, json)]]);
            case "Sequence":
            {
                PostProcessor current = Identity;
                JsonElement processors = json.RequireArray(config, "processors", path);
                int index = 0;
                foreach (JsonElement item in processors.EnumerateArray())
                {
                    string itemPath = $"{JsonFields.Join(path, "processors")}[{index++}]";
                    PostProcessor next = FromJson(item, itemPath, json);
                    current = next.Wrap(current);
                }

                return current;
            }

            default:
                throw json.Error(JsonFields.Join(path, "type"),
                    $"unsupported post-processor type '{type}' (supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence)");
        }
    }

    /// <summary>This template applied to the output of <paramref name="inner"/>.</summary>
    private PostProcessor Wrap(PostProcessor inner)
    {
        var items = new List<int[]?>();
        foreach (int[]? item in _items)
        {
            if (item is null)
            {
                items.AddRange(inner._items);
            }
            else
            {
                items.Add(item);
            }
        }

        return new PostProcessor(items);
    }

    private static PostProcessor FromTemplate(JsonElement config, string path, JsonFields json)
    {
        string specialsPath = JsonFields.Join(path, "special_tokens");
        JsonElement? specials = JsonFields.Get(config, "special_tokens");
        var items = new List<int[]?>();
        JsonElement single = json.RequireArray(config, "single", path);
        int index = 0;
        foreach (JsonElement piece in single.EnumerateArray())
        {
            string piecePath = $"{JsonFields.Join(path, "single")}[{index++}]";
            if (JsonFields.Get(piece, "Sequence") is not null)
            {
                items.Add(null);
                continue;
            }

            JsonElement special = json.RequireObject(piece, "SpecialToken", piecePath);
            string name = json.RequireString(special, "id", JsonFields.Join(piecePath, "SpecialToken"));
            if (specials is not { } map || JsonFields.Get(map, name) is not { } entry)
            {
                throw json.Error(specialsPath, $"has no entry for '{name}' used by the template");
            }

            string entryPath = $"{specialsPath}[\"{name}\"]";
            JsonElement idsJson = json.RequireArray(entry, "ids", entryPath);
            var ids = new List<int>();
            foreach (JsonElement id in idsJson.EnumerateArray())
            {
                ids.Add(id.ValueKind == JsonValueKind.Number && id.TryGetInt32(out int value)
                    ? value
                    : throw json.Error(JsonFields.Join(entryPath, "ids"), "must hold integer ids"));
            }

            items.Add([.. ids]);
        }

        return new PostProcessor(items);
    }

    /// <summary>Reads a <c>["token", id]</c> pair such as RobertaProcessing's <c>cls</c>.</summary>
    private static int ReadTokenPair(JsonElement config, string name, string path, JsonFields json)
    {
        JsonElement pair = json.RequireArray(config, name, path);
        return pair.GetArrayLength() == 2 && pair[1].ValueKind == JsonValueKind.Number && pair[1].TryGetInt32(out int id)
            ? id
            : throw json.Error(JsonFields.Join(path, name), "must be a [\"token\", id] pair");
    }
}
