"""The PyTorch (Python, eager) baseline of bench-train.

The same decoder-only model as memtrain's model/transformer.cpp with softmax
attention, trained the way trainer/trainer.cpp trains it, written the way a
PyTorch user would write it:

  - embedding * sqrt(D) + sinusoidal positions, dropout;
  - pre-LayerNorm blocks: x + drop(attn(LN(x))), x + drop(W2 drop(relu(W1 LN(x))));
    attention = q/k/v/output Linear(D, D) and causal scaled_dot_product_attention;
  - final LayerNorm, logits against the tied embedding;
  - fairseq's label-smoothed loss summed over the counted targets (trainer/loss.h),
    gradients divided by the step's token count, the gradient norm computed
    (clip_grad_norm_ with an infinite bound, as memtrain-train without --clip_norm),
    Adam(betas 0.9/0.98, eps 1e-8).

Reads the batches bench-train wrote (raw little-endian int64
[steps, 3 (inputs, targets, loss_mask), streams, length]) and prints one JSON
object: the parameter count and the seconds of each timed step.

  python bench/pytorch_train_reference.py --batches FILE --repeats S --streams B --length n ...
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, dim, heads, ffn_dim, dropout):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.self_norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.output = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn_in = nn.Linear(dim, ffn_dim)
        self.ffn_out = nn.Linear(ffn_dim, dim)

    def split_heads(self, x):
        batch, length, dim = x.shape
        return x.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def forward(self, x):
        h = self.self_norm(x)
        q, k, v = self.split_heads(self.query(h)), self.split_heads(self.key(h)), self.split_heads(self.value(h))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        attended = attended.transpose(1, 2).reshape(x.shape)
        x = x + F.dropout(self.output(attended), self.dropout, self.training)
        h = F.dropout(F.relu(self.ffn_in(self.ffn_norm(x))), self.dropout, self.training)
        return x + F.dropout(self.ffn_out(h), self.dropout, self.training)


class LanguageModel(nn.Module):
    def __init__(self, vocab, dim, heads, ffn_dim, layers, dropout):
        super().__init__()
        self.dim = dim
        self.dropout = dropout
        self.embedding = nn.Embedding(vocab, dim)
        nn.init.normal_(self.embedding.weight, 0.0, dim**-0.5)
        self.decoder = nn.ModuleList(Block(dim, heads, ffn_dim, dropout) for _ in range(layers))
        self.decoder_norm = nn.LayerNorm(dim)

    def positions(self, length):
        position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
        even = torch.arange(0, self.dim, 2, dtype=torch.float32)
        angle = position * torch.exp(even * (-math.log(10000.0) / self.dim))
        table = torch.zeros(length, self.dim)
        table[:, 0::2] = torch.sin(angle)
        table[:, 1::2] = torch.cos(angle)
        return table

    def forward(self, tokens):
        x = self.embedding(tokens) * math.sqrt(self.dim) + self.positions(tokens.shape[1])
        x = F.dropout(x, self.dropout, self.training)
        for block in self.decoder:
            x = block(x)
        return self.decoder_norm(x) @ self.embedding.weight.t()


def label_smoothed_loss(logits, targets, mask, smoothing):
    """fairseq's label_smoothed_nll_loss, summed: epsilon spread over the other V - 1 classes."""
    log_probs = logits.float().log_softmax(-1)
    weight = mask.float()
    nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * weight
    other = smoothing / (logits.shape[-1] - 1)
    uniform = -log_probs.sum(-1) * weight
    return (1.0 - smoothing - other) * nll.sum() + other * uniform.sum(), weight.sum()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", required=True)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, required=True, help="timed steps; the file holds warmup + repeats")
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--vocab", type=int, required=True)
    parser.add_argument("--dim", type=int, required=True)
    parser.add_argument("--heads", type=int, required=True)
    parser.add_argument("--ffn_dim", type=int, required=True)
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--label_smoothing", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    total = args.warmup + args.repeats
    batches = torch.from_file(args.batches, size=total * 3 * args.streams * args.length, dtype=torch.int64)
    batches = batches.view(total, 3, args.streams, args.length)

    model = LanguageModel(args.vocab, args.dim, args.heads, args.ffn_dim, args.layers, args.dropout)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-8)

    seconds = []
    losses = []
    for step in range(total):
        start = time.perf_counter()
        inputs, targets, mask = batches[step, 0], batches[step, 1], batches[step, 2].bool()
        loss, tokens = label_smoothed_loss(model(inputs), targets, mask, args.label_smoothing)
        loss.backward()
        for p in model.parameters():
            p.grad.div_(tokens)
        torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item() / tokens.item())
        if step >= args.warmup:
            seconds.append(time.perf_counter() - start)

    print(json.dumps({
        "parameters": sum(p.numel() for p in model.parameters()),
        "step_seconds": seconds,
        "tokens_per_step": int(batches[args.warmup:, 2].sum().item()) // args.repeats,
        "smoothed_loss_per_token": losses,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
