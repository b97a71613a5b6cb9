using TuneGateway.Engine.Chat;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Models;
using TuneGateway.Engine.Serving;
using TuneGateway.Engine.Tokenization;

namespace TuneGateway.Cli;

/// <summary>Errors caused by input (files, flags): printed as one clear line, without a stack trace.</summary>
internal static class CliErrors
{
    public static bool IsUserError(Exception ex) => ex is ModelLoadException or AdapterLoadException or TokenizerLoadException
        or ChatTemplateException or ArgumentException or RequestTooLongException or UnknownAdapterException
        or FileNotFoundException or DirectoryNotFoundException or InvalidDataException
        // tunegw train --out over an existing adapter without --overwrite.
        or TuneGateway.Training.AdapterExistsException
        // Invalid configuration (for example TuneGateway:TrafficLog), found when the host starts.
        or Microsoft.Extensions.Options.OptionsValidationException;
}
