#nullable enable
using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

/// <summary>
/// Marks one version need (an entry of an ELF64 file's .gnu.version_r section) as weak, so the
/// dynamic loader tolerates a host library that lacks that version. Runs only when the host's
/// libstdc++ does not define the version; idempotent; rewrites two bytes per file at most.
/// </summary>
public sealed class WeakenElfVersionNeed : Task
{
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlgWeak = 0x2;

    private static readonly string[] LibStdCxxCandidates =
    {
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
        "/usr/lib64/libstdc++.so.6",
        "/usr/lib/libstdc++.so.6",
    };

    [Required] public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();
    [Required] public string VersionName { get; set; } = "";

    public override bool Execute()
    {
        string? libstdcxx = Array.Find(LibStdCxxCandidates, File.Exists);
        if (libstdcxx is null)
        {
            Log.LogMessage(MessageImportance.Low, "libstdc++.so.6 not found in the usual places; leaving libLibTorchSharp.so as shipped.");
            return true;
        }
        if (Contains(File.ReadAllBytes(libstdcxx), Encoding.ASCII.GetBytes(VersionName + "\0")))
        {
            Log.LogMessage(MessageImportance.Low, $"{libstdcxx} provides {VersionName}; no patch needed.");
            return true;
        }

        foreach (ITaskItem item in Files)
        {
            string path = item.ItemSpec;
            try
            {
                switch (Weaken(path, VersionName))
                {
                    case Outcome.Patched:
                        Log.LogMessage(MessageImportance.High, $"Marked {VersionName} weak in {path} (host libstdc++ lacks it).");
                        break;
                    case Outcome.AlreadyWeak:
                        Log.LogMessage(MessageImportance.Low, $"{VersionName} already weak in {path}.");
                        break;
                    case Outcome.NotNeeded:
                        Log.LogMessage(MessageImportance.Low, $"{path} has no version need on {VersionName}.");
                        break;
                }
            }
            catch (Exception ex) when (ex is IOException or InvalidDataException or UnauthorizedAccessException)
            {
                Log.LogError($"Could not patch {path}: {ex.Message}");
            }
        }
        return !Log.HasLoggedErrors;
    }

    private enum Outcome { Patched, AlreadyWeak, NotNeeded }

    private static Outcome Weaken(string path, string versionName)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        using var reader = new BinaryReader(stream);
        using var writer = new BinaryWriter(stream);

        if (reader.ReadUInt32() != 0x464c457f) throw new InvalidDataException("not an ELF file");
        if (reader.ReadByte() != 2) throw new InvalidDataException("not a 64-bit ELF file");
        if (reader.ReadByte() != 1) throw new InvalidDataException("not a little-endian ELF file");

        stream.Position = 0x28;
        long sectionHeaders = (long)reader.ReadUInt64();
        stream.Position = 0x3A;
        int entrySize = reader.ReadUInt16();
        int count = reader.ReadUInt16();

        for (int i = 0; i < count; i++)
        {
            long header = sectionHeaders + (long)i * entrySize;
            stream.Position = header + 4;
            if (reader.ReadUInt32() != ShtGnuVerneed) continue;

            stream.Position = header + 0x18;
            long offset = (long)reader.ReadUInt64();
            stream.Position = header + 0x28;
            int linkedStrings = (int)reader.ReadUInt32();
            int needCount = (int)reader.ReadUInt32();

            stream.Position = sectionHeaders + (long)linkedStrings * entrySize + 0x18;
            long strings = (long)reader.ReadUInt64();

            long need = offset;
            for (int n = 0; n < needCount; n++)
            {
                stream.Position = need + 2;
                int auxCount = reader.ReadUInt16();
                stream.Position = need + 8;
                long aux = need + reader.ReadUInt32();
                uint nextNeed = reader.ReadUInt32();

                for (int a = 0; a < auxCount; a++)
                {
                    stream.Position = aux + 4;
                    ushort flags = reader.ReadUInt16();
                    stream.Position = aux + 8;
                    uint name = reader.ReadUInt32();
                    uint nextAux = reader.ReadUInt32();

                    if (ReadString(stream, strings + name) == versionName)
                    {
                        if ((flags & VerFlgWeak) != 0) return Outcome.AlreadyWeak;
                        stream.Position = aux + 4;
                        writer.Write((ushort)(flags | VerFlgWeak));
                        return Outcome.Patched;
                    }
                    aux += nextAux;
                }
                need += nextNeed;
            }
        }
        return Outcome.NotNeeded;
    }

    private static string ReadString(Stream stream, long position)
    {
        stream.Position = position;
        var bytes = new System.Collections.Generic.List<byte>();
        int b;
        while ((b = stream.ReadByte()) > 0) bytes.Add((byte)b);
        return Encoding.ASCII.GetString(bytes.ToArray());
    }

    private static bool Contains(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && haystack[i + j] == needle[j]) j++;
            if (j == needle.Length) return true;
        }
        return false;
    }
}
