using System.Globalization;
using System.Text;

namespace TuneGateway.Cli.Bench;

/// <summary>A Markdown table printed as rows arrive, so a long benchmark shows progress.</summary>
internal sealed class BenchTable(TextWriter output, params string[] columns)
{
    private readonly string[] _columns = columns;
    private bool _headerWritten;

    public void Row(params object[] cells)
    {
        if (!_headerWritten)
        {
            output.WriteLine("| " + string.Join(" | ", _columns) + " |");
            output.WriteLine("|" + string.Join("|", _columns.Select(c => new string('-', c.Length + 2))) + "|");
            _headerWritten = true;
        }
        var line = new StringBuilder("|");
        foreach (var cell in cells) line.Append(' ').Append(Format(cell)).Append(" |");
        output.WriteLine(line);
        output.Flush();
    }

    private static string Format(object cell) => cell switch
    {
        double d when double.IsNaN(d) => "-",
        double d when Math.Abs(d) >= 100 => d.ToString("N0", CultureInfo.InvariantCulture),
        double d => d.ToString("0.###", CultureInfo.InvariantCulture),
        _ => Convert.ToString(cell, CultureInfo.InvariantCulture) ?? "",
    };
}
