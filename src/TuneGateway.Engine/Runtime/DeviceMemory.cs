using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Runtime;

/// <summary>
/// Free memory of the device the KV cache goes on, for <c>--kv-cache-memory</c> given as a
/// fraction. TorchSharp exposes no mem_get_info, so CUDA asks the CUDA runtime libtorch loaded
/// (cudaMemGetInfo); the CPU reads the kernel's MemAvailable (what can be allocated without
/// swapping), or the GC's view of available memory where there is no /proc.
/// </summary>
public static class DeviceMemory
{
    private static readonly string[] CudaRuntimes = ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "cudart64_13.dll", "cudart64_12.dll"];

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int MemGetInfo(out nuint free, out nuint total);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int SetDevice(int device);

    /// <summary>Free bytes on <paramref name="device"/>; throws with the reason when it cannot be told.</summary>
    public static long Free(Device device)
    {
        if (device.type == DeviceType.CUDA) return CudaFree(device.index < 0 ? 0 : device.index);
        return CpuAvailable();
    }

    private static long CudaFree(int index)
    {
        foreach (string name in CudaRuntimes)
        {
            if (!NativeLibrary.TryLoad(name, typeof(DeviceMemory).Assembly, null, out var library)) continue;
            if (!NativeLibrary.TryGetExport(library, "cudaMemGetInfo", out var memGetInfo) ||
                !NativeLibrary.TryGetExport(library, "cudaSetDevice", out var setDevice)) continue;
            Marshal.GetDelegateForFunctionPointer<SetDevice>(setDevice)(index);
            int status = Marshal.GetDelegateForFunctionPointer<MemGetInfo>(memGetInfo)(out nuint free, out _);
            if (status != 0) throw new InvalidOperationException($"cudaMemGetInfo failed with CUDA error {status}; give --kv-cache-memory in bytes (e.g. 20GiB).");
            return (long)free;
        }
        throw new InvalidOperationException("The CUDA runtime library (libcudart) was not found to tell free GPU memory; give --kv-cache-memory in bytes (e.g. 20GiB).");
    }

    private static long CpuAvailable()
    {
        const string meminfo = "/proc/meminfo";
        if (File.Exists(meminfo))
        {
            foreach (string line in File.ReadLines(meminfo))
            {
                if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal)) continue;
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length >= 2 && long.TryParse(parts[1], out long kib)) return kib * 1024;
            }
        }
        var info = GC.GetGCMemoryInfo();
        return Math.Max(0, info.TotalAvailableMemoryBytes - info.MemoryLoadBytes);
    }
}
