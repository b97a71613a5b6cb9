using System.CommandLine;
using TuneGateway.Cli.Commands;

var root = new RootCommand("tunegw: serve Hugging Face LLMs with hot-swappable LoRA adapters, behind an OpenAI-compatible gateway.")
{
    BenchCommand.Create(),
};
return await root.Parse(args).InvokeAsync();
