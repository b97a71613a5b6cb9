using System.CommandLine;

namespace TuneGateway.Cli.Commands;

/// <summary>Options several subcommands share.</summary>
internal static class CommonOptions
{
    public static Option<string> Device() => new("--device")
    {
        Description = "auto, cpu, cuda or cuda:N (auto: CUDA when available).",
        DefaultValueFactory = _ => "auto",
    };

    public static Option<string> Dtype() => new("--dtype")
    {
        Description = "auto, float32, bfloat16 or float16 (auto: bfloat16 on CUDA, float32 on CPU).",
        DefaultValueFactory = _ => "auto",
    };
}
