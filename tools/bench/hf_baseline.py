"""Hugging Face transformers + PEFT baseline for docs/BENCHMARKS.md (run on the GPU host).

    python3 tools/bench/hf_baseline.py [--new-tokens 128] [--prompt-tokens 128]

A Qwen2.5-0.5B-shaped model with random weights (hidden 896, 24 layers, 14 heads, 2 KV heads,
intermediate 4864, vocab 151936, tied), bfloat16 on CUDA, greedy decoding with a fixed number of
new tokens, after 20 s of warm-up. Prints one table: prefill and decode tokens/s for the base
model at batch 1, 8, 32, and decode tokens/s at batch 32 with one PEFT LoRA adapter and with 8
adapters (rank 16, all seven projections) mixed per row through `adapter_names`.
"""
import argparse, time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from peft import LoraConfig, get_peft_model

ap = argparse.ArgumentParser()
ap.add_argument("--new-tokens", type=int, default=128)
ap.add_argument("--prompt-tokens", type=int, default=128)
args = ap.parse_args()
dev, dtype = "cuda", torch.bfloat16
cfg = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=4096,
                  rope_theta=1000000.0, use_sliding_window=False)
torch.manual_seed(0)
model = Qwen2ForCausalLM(cfg).to(dev, dtype).eval()


def sync():
    torch.cuda.synchronize()


@torch.no_grad()
def prefill(batch):
    x = torch.randint(10, 1000, (batch, args.prompt_tokens), device=dev)
    model(input_ids=x)
    sync()
    t = time.perf_counter()
    for _ in range(3):
        model(input_ids=x)
    sync()
    return 3 * batch * args.prompt_tokens / (time.perf_counter() - t)


@torch.no_grad()
def decode(m, batch, **kw):
    x = torch.randint(10, 1000, (batch, args.prompt_tokens), device=dev)
    gen = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
               eos_token_id=None, pad_token_id=0)
    m.generate(input_ids=x, attention_mask=torch.ones_like(x), **{**gen, "max_new_tokens": 4, "min_new_tokens": 4}, **kw)
    sync()
    t0 = time.perf_counter()
    m.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=1, min_new_tokens=1,
               do_sample=False, eos_token_id=None, pad_token_id=0, **kw)
    sync()
    t_prefill = time.perf_counter() - t0
    t = time.perf_counter()
    out = m.generate(input_ids=x, attention_mask=torch.ones_like(x), **gen, **kw)
    sync()
    elapsed = time.perf_counter() - t - t_prefill
    assert out.shape[1] == args.prompt_tokens + args.new_tokens
    return batch * (args.new_tokens - 1) / elapsed


# Warm up for a while first: on the GPU host the first runs were several times slower than later ones.
_t = time.perf_counter()
while time.perf_counter() - _t < 20:
    decode(model, 8)

rows = []
for b in (1, 8, 32):
    rows.append((f"base, batch {b}", prefill(b), decode(model, b)))

targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets, init_lora_weights=False),
                            adapter_name="a0")
for i in range(1, 32):
    peft_model.add_adapter(f"a{i}", LoraConfig(r=16, lora_alpha=32, target_modules=targets, init_lora_weights=False))
peft_model.to(dev, dtype).eval()
peft_model.set_adapter("a0")
rows.append(("PEFT, 1 adapter, batch 32", float("nan"), decode(peft_model, 32)))
for n in (8,):
    names = [f"a{i % n}" for i in range(32)]
    rows.append((f"PEFT, {n} adapters mixed, batch 32", float("nan"), decode(peft_model, 32, adapter_names=names)))

print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
      f"transformers {__import__('transformers').__version__}, peft {__import__('peft').__version__}")
print(f"prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, greedy, bfloat16")
print(f"| {'case':38} | {'prefill tok/s':>13} | {'decode tok/s':>12} |")
print(f"|{'-' * 40}|{'-' * 15}|{'-' * 14}|")
for name, p, d in rows:
    print(f"| {name:38} | {p:13.0f} | {d:12.1f} |")
