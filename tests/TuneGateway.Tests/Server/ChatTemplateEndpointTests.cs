using System.Net;
using System.Text.Json;
using TuneGateway.Gateway;
using TuneGateway.Worker;
using TuneGateway.Tests.Engine;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>A model whose own chat template is unsupported: chat answers 400 saying so; --chat-template fixes it.</summary>
public sealed class ChatTemplateEndpointTests : IDisposable
{
    private readonly string _model = Directory.CreateTempSubdirectory("tunegw-model-").FullName;

    public ChatTemplateEndpointTests()
    {
        foreach (string file in Directory.GetFiles(Fixtures.LlamaTiny)) File.Copy(file, Path.Combine(_model, Path.GetFileName(file)));
        File.WriteAllText(Path.Combine(_model, "tokenizer_config.json"),
            JsonSerializer.Serialize(new { eos_token = "<|endoftext|>", chat_template = "{% include 'other.jinja' %}" }));
    }

    public void Dispose() => Directory.Delete(_model, recursive: true);

    [Fact]
    public async Task UnsupportedTemplateIs400AndAnOverrideServesChat()
    {
        using var http = new HttpClient();
        var chat = new { model = "tunegw-model", messages = new[] { new { role = "user", content = "Hi" } }, max_tokens = 2 };

        await using (var app = WorkerHost.Create(new WorkerOptions { Engine = TinyEngine() with { ModelDirectory = _model, ServedModelName = "tunegw-model" } }, Settings()))
        {
            await app.StartAsync();
            string url = BaseUrl(app);
            await WaitReadyAsync(http, url);
            var refused = await SendJsonAsync(http, Post(url + "/v1/chat/completions", chat));
            AssertError(HttpStatusCode.BadRequest, refused, "messages", "chat_template_error");
            string message = refused.Body.GetProperty("error").GetProperty("message").GetString()!;
            Assert.Contains("not supported", message);
            Assert.Contains("--chat-template", message);
            // Completions do not need the template.
            Assert.Equal(HttpStatusCode.OK, (await SendJsonAsync(http, Post(url + "/v1/completions", new { model = "tunegw-model", prompt = "Hi", max_tokens = 2 }))).Status);
            await app.StopAsync();
        }

        string template = Path.Combine(Fixtures.Root, "chat_templates", "llama-tiny-chatml.jinja");
        await using (var app = WorkerHost.Create(new WorkerOptions
        {
            Engine = TinyEngine() with { ModelDirectory = _model, ServedModelName = "tunegw-model", ChatTemplatePath = template },
        }, Settings()))
        {
            await app.StartAsync();
            string url = BaseUrl(app);
            await WaitReadyAsync(http, url);
            var (status, body, _) = await SendJsonAsync(http, Post(url + "/v1/chat/completions", chat));
            Assert.True(status == HttpStatusCode.OK, body.ToString());
            Assert.Equal("assistant", body.GetProperty("choices")[0].GetProperty("message").GetProperty("role").GetString());
            await app.StopAsync();
        }
    }
}
