using TuneGateway.Training;

namespace TuneGateway.Cli.Demo;

/// <summary>
/// The demo's task: route a support ticket to a queue ("ticket: my invoice\nqueue:" → " billing").
/// Version 1 of the adapter learns the vocabulary of last quarter's tickets; then the product
/// changes and tickets arrive with new words (subscriptions, tracking numbers, two-factor codes):
/// the traffic drifts away from what v1 knows, and users correct its answers.
/// </summary>
internal static class TicketTask
{
    public static readonly IReadOnlyDictionary<string, string[]> OldVocabulary = new Dictionary<string, string[]>
    {
        ["billing"] = ["invoice", "refund", "payment", "charge"],
        ["shipping"] = ["package", "delivery", "courier", "parcel"],
        ["account"] = ["password", "login", "email", "profile"],
    };

    public static readonly IReadOnlyDictionary<string, string[]> NewVocabulary = new Dictionary<string, string[]>
    {
        ["billing"] = ["subscription", "renewal", "receipt", "discount"],
        ["shipping"] = ["tracking", "warehouse", "pickup", "customs"],
        ["account"] = ["username", "verification", "settings", "avatar"],
    };

    private static readonly string[] Fillers = ["my", "the", "a", "problem with", "question about", "help with", "issue:", "urgent:"];

    public static string Prompt(string filler, string word) => $"ticket: {filler} {word}\nqueue:";

    public static string Answer(string queue) => $" {queue}";

    /// <summary>Random tickets drawn from a vocabulary.</summary>
    public static IEnumerable<TrainingExample> Sample(IReadOnlyDictionary<string, string[]> vocabulary, int count, int seed)
    {
        var random = new Random(seed);
        var queues = vocabulary.Keys.ToArray();
        for (int i = 0; i < count; i++)
        {
            string queue = queues[random.Next(queues.Length)];
            string word = vocabulary[queue][random.Next(vocabulary[queue].Length)];
            yield return new TrainingExample(Prompt(Fillers[random.Next(Fillers.Length)], word), Answer(queue));
        }
    }

    /// <summary>Every ticket of a vocabulary once (the golden set and the evaluation set).</summary>
    public static IReadOnlyList<TrainingExample> All(IReadOnlyDictionary<string, string[]> vocabulary) =>
        vocabulary.SelectMany(q => q.Value.SelectMany(w => Fillers.Select(f => new TrainingExample(Prompt(f, w), Answer(q.Key))))).ToArray();

    /// <summary>A wrong queue for a ticket: the labels of a corrupted batch.</summary>
    public static string Corrupt(string answer)
    {
        var queues = OldVocabulary.Keys.ToArray();
        int at = Array.FindIndex(queues, q => Answer(q) == answer);
        return Answer(queues[(at + 1) % queues.Length]);
    }
}
