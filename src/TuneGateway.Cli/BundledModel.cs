namespace TuneGateway.Cli;

/// <summary>
/// The small model shipped with tunegw (the llama-tiny reference fixture, with its two example
/// adapters), used when no --model is given so a fresh clone works offline.
/// </summary>
internal static class BundledModel
{
    public static string Root => Path.Combine(AppContext.BaseDirectory, "models", "llama-tiny");
    public static string Directory => Path.Combine(Root, "base");
    public static string Adapters => Path.Combine(Root, "adapters");
}
