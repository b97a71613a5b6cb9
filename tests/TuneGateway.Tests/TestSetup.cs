using System.Runtime.CompilerServices;
using TorchSharp;

namespace TuneGateway.Tests;

internal static class TestSetup
{
    /// <summary>
    /// xunit runs test classes in parallel and CI has two cores: libtorch's own thread pool on
    /// top of that only makes threads spin against each other (5x slower when measured), so the
    /// test process runs each tensor operation on one thread.
    /// </summary>
    [ModuleInitializer]
    internal static void SingleThreadedTorch() => torch.set_num_threads(1);
}
