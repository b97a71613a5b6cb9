namespace TuneGateway.Cli.Operator;

/// <summary>A plain-text table for terminals: left-aligned columns two spaces apart, a header row, "-" for empty cells.</summary>
internal sealed class TextTable(params string[] headers)
{
    private const string Empty = "-";
    private readonly List<string[]> _rows = [];

    public int Count => _rows.Count;

    public TextTable Add(params string?[] cells)
    {
        if (cells.Length != headers.Length) throw new ArgumentException($"A row needs {headers.Length} cells, got {cells.Length}.", nameof(cells));
        // One line per row: a newline inside a cell (a multi-line reason) would break the columns.
        _rows.Add([.. cells.Select(c => string.IsNullOrEmpty(c) ? Empty : c.ReplaceLineEndings(" "))]);
        return this;
    }

    public void WriteTo(TextWriter output)
    {
        int[] widths = [.. headers.Select((h, i) => _rows.Select(r => r[i].Length).Append(h.Length).Max())];
        output.WriteLine(Line(headers, widths));
        foreach (var row in _rows) output.WriteLine(Line(row, widths));
    }

    private static string Line(string[] cells, int[] widths) =>
        // The last column is not padded, so lines carry no trailing blanks.
        string.Join("  ", cells.Select((c, i) => i == cells.Length - 1 ? c : c.PadRight(widths[i])));
}
