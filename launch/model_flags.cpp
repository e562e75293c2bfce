#include "launch/model_flags.h"

#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace {
// Defaults come from the option structs, so the papers' values live in one place.
const memtrain::model::TransformerOptions kModel;
const memtrain::model::AttentionOptions& kAttention = kModel.attention_options;
}  // namespace

ABSL_FLAG(int64_t, vocab_size, kModel.vocab_size, "Vocabulary size (the corpus's tokenizer).");
ABSL_FLAG(int64_t, model_dim, kModel.model_dim, "Model width D.");
ABSL_FLAG(int64_t, heads, kModel.heads, "Attention heads.");
ABSL_FLAG(int64_t, ffn_dim, kModel.ffn_dim, "Feed-forward width.");
ABSL_FLAG(int64_t, encoder_layers, kModel.encoder_layers, "Encoder layers (0: decoder-only LM).");
ABSL_FLAG(int64_t, decoder_layers, kModel.decoder_layers, "Decoder layers.");
ABSL_FLAG(double, dropout, kModel.dropout, "Residual and feed-forward dropout.");
ABSL_FLAG(double, attention_dropout, kModel.attention_dropout,
          "Dropout on attention probabilities.");
ABSL_FLAG(bool, tie_embeddings, kModel.tie_embeddings, "Output projection = input embedding.");
ABSL_FLAG(std::string, attention, kModel.attention,
          absl::StrCat("Self-attention kind of every layer: ",
                       absl::StrJoin(memtrain::model::AttentionKinds(), ", "), "."));
ABSL_FLAG(std::string, cross_attention, kModel.cross_attention,
          absl::StrCat("Decoder cross-attention kind: ",
                       absl::StrJoin(memtrain::model::AttentionKinds(), ", "), "."));
ABSL_FLAG(std::vector<std::string>, knn_layers, {},
          "Decoder layers (0-based) whose self-attention is knn (the Memorizing Transformer).");
ABSL_FLAG(std::vector<std::string>, layer_attention, {},
          "Per-layer overrides LAYER:KIND, e.g. 3:performer,5:memsizer (decoder layers).");
ABSL_FLAG(int64_t, linformer_k, kAttention.linformer.projected_length,
          "Linformer projected length k.");
ABSL_FLAG(int64_t, linformer_max_length, kAttention.linformer.max_length,
          "Linformer maximum sequence length n.");
ABSL_FLAG(memtrain::model::LinformerSharing, linformer_sharing, kAttention.linformer.sharing,
          absl::StrCat("Linformer projections (paper §4), one of ",
                       absl::StrJoin(memtrain::model::LinformerSharingNames(), ", "),
                       ": per head, per layer, E = F per layer, one E for the whole model."));
ABSL_FLAG(int64_t, performer_features, kAttention.performer.features,
          "Performer random features r.");
ABSL_FLAG(int64_t, performer_redraw_interval, kAttention.performer.redraw_interval,
          "Performer: training calls between feature redraws (0: never).");
ABSL_FLAG(int64_t, memsizer_slots, kAttention.memsizer.slots, "MemSizer memory slots k.");
ABSL_FLAG(int64_t, knn_top_k, kAttention.knn.top_k,
          "Memorizing Transformer: neighbours retrieved.");
ABSL_FLAG(int64_t, knn_memory_size, kAttention.knn.memory_size,
          "Memorizing Transformer: memory capacity in tokens per stream.");
ABSL_FLAG(int64_t, infinite_basis, kAttention.infinite.basis,
          "∞-former: radial basis functions N.");
ABSL_FLAG(int64_t, infinite_samples, kAttention.infinite.samples,
          "∞-former: samples M at a memory update.");
ABSL_FLAG(double, infinite_tau, kAttention.infinite.tau, "∞-former: compression point τ.");
ABSL_FLAG(double, infinite_ridge, kAttention.infinite.ridge, "∞-former: ridge penalty λ.");
ABSL_FLAG(bool, infinite_sticky, kAttention.infinite.sticky, "∞-former: sticky memories.");

namespace memtrain::launch {

absl::StatusOr<model::TransformerOptions> ModelOptionsFromFlags() {
  model::TransformerOptions o;
  o.vocab_size = absl::GetFlag(FLAGS_vocab_size);
  o.model_dim = absl::GetFlag(FLAGS_model_dim);
  o.heads = absl::GetFlag(FLAGS_heads);
  o.ffn_dim = absl::GetFlag(FLAGS_ffn_dim);
  o.encoder_layers = absl::GetFlag(FLAGS_encoder_layers);
  o.decoder_layers = absl::GetFlag(FLAGS_decoder_layers);
  o.dropout = absl::GetFlag(FLAGS_dropout);
  o.attention_dropout = absl::GetFlag(FLAGS_attention_dropout);
  o.tie_embeddings = absl::GetFlag(FLAGS_tie_embeddings);
  o.attention = absl::GetFlag(FLAGS_attention);
  o.cross_attention = absl::GetFlag(FLAGS_cross_attention);
  for (const std::string& text : absl::GetFlag(FLAGS_knn_layers)) {
    int64_t layer = 0;
    if (!absl::SimpleAtoi(text, &layer)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--knn_layers: '", text, "' is not a layer number"));
    }
    o.layer_attention[layer] = "knn";
  }
  for (const std::string& entry : absl::GetFlag(FLAGS_layer_attention)) {
    std::vector<std::string> parts = absl::StrSplit(entry, ':');
    int64_t layer = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &layer) || parts[1].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--layer_attention: '", entry, "' is not LAYER:KIND (e.g. 3:performer)"));
    }
    o.layer_attention[layer] = parts[1];
  }
  model::AttentionOptions& a = o.attention_options;
  a.linformer.projected_length = absl::GetFlag(FLAGS_linformer_k);
  a.linformer.max_length = absl::GetFlag(FLAGS_linformer_max_length);
  a.linformer.sharing = absl::GetFlag(FLAGS_linformer_sharing);
  a.performer.features = absl::GetFlag(FLAGS_performer_features);
  a.performer.redraw_interval = absl::GetFlag(FLAGS_performer_redraw_interval);
  a.memsizer.slots = absl::GetFlag(FLAGS_memsizer_slots);
  a.knn.top_k = absl::GetFlag(FLAGS_knn_top_k);
  a.knn.memory_size = absl::GetFlag(FLAGS_knn_memory_size);
  a.infinite.basis = absl::GetFlag(FLAGS_infinite_basis);
  a.infinite.samples = absl::GetFlag(FLAGS_infinite_samples);
  a.infinite.tau = absl::GetFlag(FLAGS_infinite_tau);
  a.infinite.ridge = absl::GetFlag(FLAGS_infinite_ridge);
  a.infinite.sticky = absl::GetFlag(FLAGS_infinite_sticky);
  return o;
}

}  // namespace memtrain::launch
