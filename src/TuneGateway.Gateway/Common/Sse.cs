using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace TuneGateway.Gateway.Common;

/// <summary>Server-sent events as OpenAI streams them: <c>data: {json}</c> lines, then <c>data: [DONE]</c>.</summary>
public static class Sse
{
    private static readonly byte[] DataPrefix = "data: "u8.ToArray();
    private static readonly byte[] EventEnd = "\n\n"u8.ToArray();
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    /// <summary>Sends the headers of an event stream (status 200) so the client sees the stream open at once.</summary>
    public static async Task StartAsync(HttpResponse response)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        await response.StartAsync().ConfigureAwait(false);
    }

    /// <summary>Writes one event and flushes it.</summary>
    public static async Task WriteAsync<T>(HttpResponse response, T payload, JsonSerializerOptions options, CancellationToken cancellationToken)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(payload, options);
        var buffer = new byte[DataPrefix.Length + bytes.Length + EventEnd.Length];
        DataPrefix.CopyTo(buffer, 0);
        bytes.CopyTo(buffer, DataPrefix.Length);
        EventEnd.CopyTo(buffer, DataPrefix.Length + bytes.Length);
        await response.Body.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
        await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public static async Task WriteDoneAsync(HttpResponse response, CancellationToken cancellationToken)
    {
        await response.Body.WriteAsync(Done, cancellationToken).ConfigureAwait(false);
        await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Splits an event stream into the payloads of its <c>data:</c> lines, incrementally: feed it
    /// bytes as they pass, in chunks of any size.
    /// </summary>
    public sealed class Parser
    {
        private readonly List<byte> _line = [];

        /// <summary>Adds bytes; calls <paramref name="onData"/> with each complete <c>data:</c> payload.</summary>
        public void Feed(ReadOnlySpan<byte> bytes, Action<string> onData)
        {
            foreach (byte b in bytes)
            {
                if (b != (byte)'\n')
                {
                    _line.Add(b);
                    continue;
                }
                var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_line);
                if (span.Length > 0 && span[^1] == (byte)'\r') span = span[..^1];
                if (span.StartsWith("data:"u8))
                {
                    var data = span[5..];
                    if (data.Length > 0 && data[0] == (byte)' ') data = data[1..];
                    onData(Encoding.UTF8.GetString(data));
                }
                _line.Clear();
            }
        }
    }
}
