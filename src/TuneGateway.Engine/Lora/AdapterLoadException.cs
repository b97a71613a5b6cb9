namespace TuneGateway.Engine.Lora;

/// <summary>
/// An adapter directory cannot be used with the loaded base model: a file is missing or corrupt,
/// the config asks for something that would change the math and is not implemented, or a tensor
/// does not fit the base. The message names the file and the field or tensor (with shapes).
/// </summary>
public sealed class AdapterLoadException : Exception
{
    public AdapterLoadException(string message) : base(message) { }

    public AdapterLoadException(string message, Exception inner) : base(message, inner) { }
}
