using System.Text.Json;
using TuneGateway.Engine.Lora;
using TuneGateway.Gateway.Lifecycle;

namespace TuneGateway.Worker;

/// <summary>
/// A PEFT LoRA directory as the engine reads it: the lifecycle API's check of a directory before it
/// registers it as a version (the gateway does not reference the engine).
/// </summary>
public sealed class PeftAdapterFormat : IAdapterFormat
{
    public static PeftAdapterFormat Instance { get; } = new();

    public string? Problem(string directory)
    {
        try
        {
            _ = LoraConfig.FromFile(Path.Combine(directory, "adapter_config.json"));
            return null;
        }
        catch (Exception ex) when (ex is AdapterLoadException or IOException or JsonException)
        {
            return ex.Message;
        }
    }
}
