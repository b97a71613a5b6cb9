using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Runtime;

/// <summary>
/// Chooses the device and dtype the engine computes in, from the <c>--device</c> and
/// <c>--dtype</c> options: <c>auto</c> picks CUDA when libtorch sees a GPU (bfloat16 there,
/// float32 on CPU).
/// </summary>
public static class TorchRuntime
{
    private static readonly Lock InitLock = new();
    private static bool _cudaProbed;
    private static bool _cudaAvailable;

    /// <summary>True when a CUDA build of libtorch is loaded and sees at least one GPU.</summary>
    public static bool CudaAvailable
    {
        get
        {
            lock (InitLock)
            {
                if (!_cudaProbed)
                {
                    _cudaProbed = true;
                    try
                    {
                        torch.InitializeDeviceType(DeviceType.CUDA);
                        _cudaAvailable = torch.cuda.is_available();
                    }
                    catch (Exception ex) when (ex is NotSupportedException or InvalidOperationException or TypeInitializationException or DllNotFoundException)
                    {
                        _cudaAvailable = false;
                    }
                }
                return _cudaAvailable;
            }
        }
    }

    /// <summary>Parses <c>auto</c>, <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c>.</summary>
    public static Device ResolveDevice(string? spec)
    {
        spec = string.IsNullOrWhiteSpace(spec) ? "auto" : spec.Trim().ToLowerInvariant();
        if (spec == "auto") return CudaAvailable ? torch.CUDA : torch.CPU;
        if (spec == "cpu") return torch.CPU;
        if (spec == "cuda" || spec.StartsWith("cuda:", StringComparison.Ordinal))
        {
            int index = 0;
            if (spec.Length > 5 && !int.TryParse(spec.AsSpan(5), out index))
                throw new ArgumentException($"--device '{spec}': expected cuda:N with N a GPU index.");
            if (!CudaAvailable)
                throw new ArgumentException($"--device '{spec}': no CUDA device is available (this build uses {BackendDescription}).");
            if (index >= torch.cuda.device_count())
                throw new ArgumentException($"--device '{spec}': only {torch.cuda.device_count()} CUDA device(s) are visible.");
            return new Device(DeviceType.CUDA, index);
        }
        throw new ArgumentException($"--device '{spec}': expected auto, cpu, cuda or cuda:N.");
    }

    /// <summary>Parses <c>auto</c>, <c>float32</c>, <c>bfloat16</c> or <c>float16</c> for a device.</summary>
    public static ScalarType ResolveDtype(string? spec, Device device)
    {
        spec = string.IsNullOrWhiteSpace(spec) ? "auto" : spec.Trim().ToLowerInvariant();
        return spec switch
        {
            "auto" => device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32,
            "float32" or "fp32" or "f32" => ScalarType.Float32,
            "bfloat16" or "bf16" => ScalarType.BFloat16,
            "float16" or "fp16" or "f16" or "half" => ScalarType.Float16,
            _ => throw new ArgumentException($"--dtype '{spec}': expected auto, float32, bfloat16 or float16."),
        };
    }

    public static string DtypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => dtype.ToString().ToLowerInvariant(),
    };

    /// <summary>What the loaded libtorch can do, for logs and benchmark tables.</summary>
    public static string BackendDescription =>
        CudaAvailable ? $"libtorch CUDA ({torch.cuda.device_count()} GPU)" : $"libtorch CPU ({torch.get_num_threads()} threads)";
}
