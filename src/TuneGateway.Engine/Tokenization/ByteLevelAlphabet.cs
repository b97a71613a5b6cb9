namespace TuneGateway.Engine.Tokenization;

/// <summary>
/// The GPT-2 byte-to-character alphabet used by byte-level BPE: every byte value maps to one
/// printable character (printable Latin-1 bytes map to themselves, the rest to U+0100 onwards),
/// so that any UTF-8 byte string can be spelled with vocabulary characters.
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly char[] s_byteToChar = BuildByteToChar();
    private static readonly short[] s_charToByte = BuildCharToByte(s_byteToChar);

    /// <summary>The character that stands for <paramref name="value"/>.</summary>
    public static char ToChar(byte value) => s_byteToChar[value];

    /// <summary>The byte that <paramref name="c"/> stands for, or -1 when it is not in the alphabet.</summary>
    public static int ToByte(char c) => c < s_charToByte.Length ? s_charToByte[c] : -1;

    /// <summary>Spells the UTF-8 bytes of <paramref name="text"/> with the byte-level alphabet.</summary>
    public static string Encode(string text)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(text);
        return string.Create(bytes.Length, bytes, static (chars, source) =>
        {
            for (int i = 0; i < source.Length; i++)
            {
                chars[i] = s_byteToChar[source[i]];
            }
        });
    }

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)next++;
        }

        return map;
    }

    private static short[] BuildCharToByte(char[] byteToChar)
    {
        var map = new short[byteToChar.Max() + 1];
        Array.Fill(map, (short)-1);
        for (int b = 0; b < byteToChar.Length; b++)
        {
            map[byteToChar[b]] = (short)b;
        }

        return map;
    }
}
