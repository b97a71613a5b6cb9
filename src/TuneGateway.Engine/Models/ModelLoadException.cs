namespace TuneGateway.Engine.Models;

/// <summary>
/// A model directory cannot be served: a file is missing or malformed, a field holds a value the
/// engine does not support, or a tensor is missing or has the wrong shape. The message names the
/// file and the field or tensor, so that it can be shown to an operator as is.
/// </summary>
public sealed class ModelLoadException : Exception
{
    public ModelLoadException(string message) : base(message) { }

    public ModelLoadException(string message, Exception inner) : base(message, inner) { }
}
