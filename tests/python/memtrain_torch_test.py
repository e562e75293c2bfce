"""memtrain_torch (python/memtrain_torch) against memtrain itself.

Tiny models trained by memtrain-train (decoder-only LMs and seq2seq models,
every supported attention kind in every role it has: causal self, encoder
self, cross; rotary and sinusoidal positions; tied and separate output
embeddings; Linformer projections per head and one for the whole model) are
exported with memtrain-ckpt export and loaded by memtrain_torch; on the same
tokens (with padding) its float32 logits must equal `memtrain-ckpt logits`
within 1e-5 at every position. Also:
  - a model directory (model.json + model.pt) loads to the same logits;
  - the Performer's stored features are the ones its redraw schedule gives
    (memtrain redrew them during training; memtrain_torch draws the same);
  - fine-tuning in PyTorch (two steps that redraw the features again), saving
    with memtrain_torch.save, memtrain-ckpt import: memtrain's logits of the
    imported model equal PyTorch's;
  - knn and infinite layers are refused naming the layer and the kind.

    memtrain_torch_test.py BIN_DIR     (PYTHONPATH must hold python/)
"""

import json
import os
import random
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

import memtrain_torch

TOLERANCE = 1e-5
BIN = sys.argv[1]


def run(*args):
    done = subprocess.run([os.path.join(BIN, args[0]), *args[1:]], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"FAIL: {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def translation_corpus(work):
    # A toy language pair: each source word has a fixed target word, in reverse order.
    rng = random.Random(7)
    lexicon = [f"w{i}" for i in range(40)]
    with open(f"{work}/src.txt", "w") as src, open(f"{work}/tgt.txt", "w") as tgt:
        for _ in range(300):
            words = rng.choices(lexicon, k=rng.randint(3, 9))
            src.write(" ".join(words) + "\n")
            tgt.write(" ".join(f"t{w[1:]}x" for w in reversed(words)) + "\n")
    run("memtrain-prepare", "--corpus=wmt16", f"--inputs={work}/src.txt,{work}/tgt.txt", "--vocab_size=400",
        f"--output={work}/mt.h5", "--progress=false")


COMMON = ["--steps=3", "--lr=3e-3", "--warmup_steps=0", "--lr_schedule=constant", "--model_dim=16", "--heads=2",
          "--ffn_dim=32", "--dropout=0.1", "--log_every=100"]
LM = ["--encoder_layers=0", "--decoder_layers=2", "--streams=2", "--segment_length=16"]
SEQ2SEQ = ["--encoder_layers=1", "--decoder_layers=2", "--max_tokens=128", "--max_source_length=24",
           "--max_target_length=24"]
MODELS = {
    # rotary positions (auto for decoder-only softmax), tied embeddings
    "lm_softmax": LM + ["--attention=softmax"],
    # sinusoidal; features redrawn every 2 training calls; chunks of 8 over 37 tokens; own output layer
    "lm_linear": LM + ["--attention=performer", "--layer_attention=1:memsizer", "--performer_features=12",
                       "--performer_redraw_interval=2", "--performer_chunk=8", "--memsizer_slots=6",
                       "--memsizer_chunk=8", "--tie_embeddings=false"],
    # one Linformer projection for the whole model
    "mt_linformer": SEQ2SEQ + ["--attention=linformer", "--layer_attention=0:softmax,1:softmax",
                               "--cross_attention=softmax", "--linformer_sharing=layerwise", "--linformer_k=6",
                               "--linformer_max_length=32"],
    "mt_performer": SEQ2SEQ + ["--attention=performer", "--layer_attention=0:memsizer", "--cross_attention=memsizer",
                               "--performer_features=8", "--performer_kernel=relu", "--memsizer_slots=4"],
    "mt_memsizer": SEQ2SEQ + ["--attention=memsizer", "--layer_attention=1:softmax", "--cross_attention=performer",
                              "--memsizer_slots=5", "--performer_features=8"],
    # rotary positions in an encoder-decoder model; per-head Linformer projections across
    "mt_rotary": SEQ2SEQ + ["--attention=softmax", "--positions=rotary", "--cross_attention=linformer",
                            "--linformer_sharing=none", "--linformer_k=6", "--linformer_max_length=32"],
}


def tokens_for(model, seed):
    """Decoder input (and source) with trailing padding in the second row."""
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    pad, vocab = config["pad_id"], config["vocab_size"]

    def ids(rows, length, padded):
        t = torch.randint(0, vocab - 1, (rows, length), generator=generator)
        t = t + (t >= pad).long()  # never pad_id ...
        t[1, length - padded:] = pad  # ... except at the end of row 1
        return t

    if config["encoder_layers"] == 0:
        return {"tokens": ids(2, 37, 0)}
    return {"tokens": ids(2, 9, 3), "source": ids(2, 12, 4)}


def unpadded(model, inputs):
    return inputs["tokens"] != model.config["pad_id"]


def memtrain_logits(work, name, model_dir, inputs):
    save_file(inputs, f"{work}/{name}.tokens.safetensors")
    run("memtrain-ckpt", "logits", f"--tokens={work}/{name}.tokens.safetensors",
        f"--output={work}/{name}.logits.safetensors", model_dir)
    return load_file(f"{work}/{name}.logits.safetensors")["logits"]


def torch_logits(model, inputs):
    with torch.no_grad():
        return model(inputs["tokens"], inputs.get("source"))


def compare(what, ours, theirs, unpadded):
    """Logits at the decoder's unpadded positions (`unpadded`, [B, n] bool): memtrain
    computes no feed-forward for padding (model/transformer.h), so the padding's own
    logits are nobody's result and differ."""
    if ours.shape != theirs.shape:
        sys.exit(f"FAIL {what}: logits of shape {tuple(ours.shape)}, memtrain's {tuple(theirs.shape)}")
    diff = (ours[unpadded] - theirs[unpadded]).abs().max().item()
    if not diff <= TOLERANCE:
        sys.exit(f"FAIL {what}: logits differ from memtrain's by up to {diff:.3g} (tolerance {TOLERANCE})")
    print(f"{what}: logits {tuple(ours.shape)} equal memtrain's, max |difference| {diff:.2g}")


def performer_layers(model):
    return [m for m in model.modules() if isinstance(m, memtrain_torch.attention.PerformerAttention)]


def check_redraw_state(name, model):
    for layer in performer_layers(model):
        redraws = int(layer.redraw_counters[0].item())
        drawn = layer.draw_projection(redraws).to(layer.projection.dtype)
        if not torch.equal(drawn, layer.projection):
            sys.exit(f"FAIL {name}: {layer.layer}: the stored features are not redraw {redraws} of the schedule")
        print(f"{name}: {layer.layer}: stored features = redraw {redraws}, drawn again identically")
    return min(int(layer.redraw_counters[0].item()) for layer in performer_layers(model))


def fine_tune_round_trip(work, name, model):
    # Two training steps in PyTorch; the second redraws the features.
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs = tokens_for(model, seed=11)
    for _ in range(2):
        logits = model(inputs["tokens"][:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), inputs["tokens"][:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    memtrain_torch.save(model, f"{work}/{name}.tuned.safetensors")
    run("memtrain-ckpt", "import", f"--output={work}/{name}.tuned", f"{work}/{name}.tuned.safetensors")
    compare(f"{name} fine-tuned in PyTorch, imported", torch_logits(model, inputs),
            memtrain_logits(work, f"{name}.tuned", f"{work}/{name}.tuned", inputs), unpadded(model, inputs))
    return check_redraw_state(f"{name} fine-tuned", model)


def check_refusals(config):
    for kind in memtrain_torch.UNSUPPORTED_KINDS:
        try:
            memtrain_torch.Transformer(dict(config, layer_attention={"1": kind}))
        except memtrain_torch.UnsupportedAttention as error:
            if "decoder.1.self" not in str(error) or f"'{kind}'" not in str(error):
                sys.exit(f"FAIL: the refusal of {kind} does not name the layer and the kind: {error}")
            print(f"refused: {error}")
            continue
        sys.exit(f"FAIL: a model with a {kind} layer was built")


def main():
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as work:
        run("memtrain-prepare", "--corpus=demo", "--demo_documents=30", "--demo_distance_words=40",
            "--vocab_size=400", f"--output={work}/lm.h5", "--progress=false")
        translation_corpus(work)
        for name, flags in MODELS.items():
            corpus = "lm.h5" if name.startswith("lm") else "mt.h5"
            run("memtrain-train", f"--train_data={work}/{corpus}", f"--save_dir={work}/{name}", *COMMON, *flags)
            run("memtrain-ckpt", "export", "--format=safetensors", f"--output={work}/{name}.safetensors",
                f"{work}/{name}")
            model = memtrain_torch.load(f"{work}/{name}.safetensors")
            inputs = tokens_for(model, seed=len(name))
            expected = memtrain_logits(work, name, f"{work}/{name}", inputs)
            compare(name, torch_logits(model, inputs), expected, unpadded(model, inputs))
            if name == "lm_softmax":
                compare(f"{name} from its model directory", torch_logits(memtrain_torch.load(f"{work}/{name}"), inputs),
                        expected, unpadded(model, inputs))
                check_refusals(model.config)
            if name == "lm_linear":
                if check_redraw_state(name, model) < 1:
                    sys.exit(f"FAIL {name}: memtrain never redrew the features; the check proves nothing")
                if fine_tune_round_trip(work, name, model) < 2:
                    sys.exit(f"FAIL {name}: fine-tuning in PyTorch did not redraw the features")
    print("PASS")


if __name__ == "__main__":
    main()
