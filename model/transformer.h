// File: model/transformer.h
//
// `Transformer`: encoder-decoder (translation, summarization, QA) and
// decoder-only (language modelling) models from one pre-LayerNorm block type,
// with the attention kind chosen per layer and per role (model/attention.h).
//
//   TransformerOptions options;
//   options.vocab_size = 8000;  options.encoder_layers = 0;  // decoder-only
//   options.attention = "softmax";  options.layer_attention = {{5, "knn"}};
//   Transformer model(options);
//   at::Tensor logits = model->ForwardLm(tokens);                  // [B, n, vocab]
//   at::Tensor counted = model->ForwardLm(tokens, 0, loss_mask);   // [T, vocab]
//   auto states = model->NewDecodeStates(batch);                   // decoding
//   at::Tensor next = model->DecodeStep(tokens_t, {}, {}, states); // [B, 1, vocab]
//
// Positions (model/positions.h): sinusoidal, added to the scaled embeddings
// at each token's absolute position (with DecodeStates the position
// continues from what the states have consumed, so decoding token by token
// sees the same positions as a full forward); or rotary, inside each
// self-attention layer, counted from the start of the layer's window.
#ifndef MEMTRAIN_MODEL_TRANSFORMER_H_
#define MEMTRAIN_MODEL_TRANSFORMER_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "memory/knn_layer_memory.h"
#include "model/attention.h"
#include "model/dropout.h"
#include "model/knn_attention.h"
#include "model/positions.h"

namespace memtrain::model {

/// The scalar options of TransformerOptions as X(name, help): each is the
/// flag --name (launch/model_flags.cpp) and the field `name` of model.json
/// (TransformerOptionsToJson); the initializers below are the defaults.
/// layer_attention and attention_options have forms of their own.
// clang-format off
#define MEMTRAIN_TRANSFORMER_OPTIONS(X)                                                           \
  X(vocab_size, "Vocabulary size (memtrain-train takes the corpus tokenizer's).")               \
  X(model_dim, "Model width D.")                                                                 \
  X(heads, "Attention heads.")                                                                   \
  X(ffn_dim, "Feed-forward width.")                                                              \
  X(encoder_layers, "Encoder layers (0: decoder-only LM).")                                      \
  X(decoder_layers, "Decoder layers.")                                                           \
  X(dropout, "Residual and feed-forward dropout.")                                               \
  X(dropout_sampler, absl::StrCat("How --dropout's masks are drawn on the CPU: ",                 \
                                  absl::StrJoin(::memtrain::model::DropoutSamplerNames(), ", "), \
                                  " (model/dropout.h: philox is parallel; aten is at::dropout, "  \
                                  "what models before model.json format 5 trained with)."))      \
  X(attention_dropout, "Dropout on attention probabilities.")                                    \
  X(tie_embeddings, "Output projection = input embedding.")                                      \
  X(pad_id, "Padding token id (memtrain-train takes the corpus tokenizer's).")                   \
  X(attention, absl::StrCat("Self-attention kind of every layer: ",                              \
                            absl::StrJoin(::memtrain::model::AttentionKinds(), ", "), "."))      \
  X(cross_attention, absl::StrCat("Decoder cross-attention kind: ",                              \
                                  absl::StrJoin(::memtrain::model::AttentionKinds(), ", "), ".")) \
  X(positions, absl::StrCat("Position encoding: ",                                               \
                            absl::StrJoin(::memtrain::model::PositionsNames(), ", "),            \
                            " (model/positions.h; auto: rotary for decoder-only models whose "   \
                            "attention kinds take it, else sinusoidal)."))                       \
  X(xl_cache, "Transformer-XL cache: over document streams every decoder layer also attends to " \
              "the previous segment (decoder-only, rotary positions).")
// clang-format on

struct TransformerOptions {
  int64_t vocab_size = 8000;
  int64_t model_dim = 512;
  int64_t heads = 8;
  int64_t ffn_dim = 2048;
  int64_t encoder_layers = 6;  ///< 0: decoder-only
  int64_t decoder_layers = 6;
  double dropout = 0.1;  ///< residual and feed-forward dropout
  DropoutSampler dropout_sampler = DropoutSampler::kPhilox;
  double attention_dropout = 0.0;
  bool tie_embeddings = true;  ///< output projection = input embedding (and encoder's)
  int32_t pad_id = 0;
  /// Self-attention kind of every layer unless overridden per layer.
  std::string attention = "softmax";
  /// Decoder cross-attention kind.
  std::string cross_attention = "softmax";
  /// How tokens know their place (model/positions.h). TransformerImpl
  /// resolves kAuto; options() and model.json hold the result.
  Positions positions = Positions::kAuto;
  /// Transformer-XL cache in every decoder self-attention layer (segment
  /// streams only: ForwardSegment and decoding through segments).
  bool xl_cache = false;
  /// Decoder layer index -> self-attention kind (e.g. {{8, "knn"}}).
  std::map<int64_t, std::string> layer_attention;
  /// Base options (variant hyper-parameters) for every attention layer; the
  /// width, heads, dropout, layer name and role are filled in per layer.
  AttentionOptions attention_options;
};

/// The options as JSON (for checkpoints) and back. Reading refuses unknown
/// fields by name; a missing field takes its default, so configs written
/// before an option existed keep loading (checkpoints/model_file.h versions
/// the file around it).
std::string TransformerOptionsToJson(const TransformerOptions& options);
absl::StatusOr<TransformerOptions> TransformerOptionsFromJson(const std::string& json);

/// One pre-LayerNorm block: self-attention, optional cross-attention,
/// feed-forward, each as x + dropout(sublayer(norm(x))).
class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(const TransformerOptions& options,
                       std::shared_ptr<AttentionImpl> self_attention,
                       std::shared_ptr<AttentionImpl> cross_attention);
  /// x [B, n, D]; padding [B, n] (true = pad) as the attention's key padding.
  /// `computed_rows` (int64, flattened positions b * n + t), where given,
  /// are the positions whose feed-forward is computed; the others keep their
  /// input there. The model passes the positions that are not padding: every
  /// attention kind masks padded keys, so no other position reads a padded
  /// one's state, and skipping them changes only the padding's own outputs
  /// (its dropout masks are drawn as for every position: DropoutRows).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& padding, bool causal,
                     const at::Tensor& memory, const at::Tensor& memory_padding,
                     DecodeState* self_state, DecodeState* cross_state,
                     const at::Tensor& computed_rows = {});
  AttentionImpl& self_attention() { return *self_attention_; }
  AttentionImpl* cross_attention() { return cross_attention_.get(); }

 private:
  double dropout_;
  DropoutSampler dropout_sampler_;
  std::shared_ptr<AttentionImpl> self_attention_, cross_attention_;
  torch::nn::LayerNorm self_norm_{nullptr}, cross_norm_{nullptr}, ffn_norm_{nullptr};
  torch::nn::Linear ffn_in_{nullptr}, ffn_out_{nullptr};
};
TORCH_MODULE(TransformerBlock);

/// Decoding state of the whole decoder: one self and one cross state per layer.
struct TransformerDecodeStates {
  std::vector<std::unique_ptr<DecodeState>> self, cross;
  int64_t position = 0;  ///< decoder tokens consumed
  /// Decoder-only models trained over segments: DecodeStep ends a segment
  /// every `segment_length` tokens as ForwardSegment does (0: one segment).
  int64_t segment_length = 0;
  void Reorder(const at::Tensor& indices);
  /// The sum of the self-attention states' AuxiliaryLoss() (model/attention.h
  /// SegmentMemoryState); undefined when none has one.
  at::Tensor AuxiliaryLoss() const;
};

class TransformerImpl : public torch::nn::Module {
 public:
  /// Throws c10::Error naming the layer for an impossible configuration; use
  /// MakeTransformer for a Status instead.
  explicit TransformerImpl(const TransformerOptions& options);

  /// Decoder-only: next-token logits [B, n, vocab] for tokens [B, n].
  ///
  /// `logits_at` ([B, n] bool), where given, asks for the logits of those
  /// positions only: [T, vocab], T = its count, in row-major order (as
  /// at::masked_select orders them). Training passes the loss mask, so no
  /// output projection is computed for padding and prefix positions, which
  /// no loss counts: the output projection against the vocabulary is the
  /// largest product of a step (a third of the FLOPs of bench-train's model).
  /// The same `logits_at` argument below.
  at::Tensor ForwardLm(const at::Tensor& tokens, int64_t position_offset = 0,
                       const at::Tensor& logits_at = {});
  /// Encoder output [B, s, D] for source [B, s] (padding = pad_id tokens).
  at::Tensor Encode(const at::Tensor& source);
  /// Teacher-forced decoder logits [B, n, vocab].
  at::Tensor Decode(const at::Tensor& target_input, const at::Tensor& memory,
                    const at::Tensor& source, const at::Tensor& logits_at = {});
  /// Logits for the next `tokens` [B, n] (usually n = 1) given the states;
  /// `memory`/`source` are needed by encoder-decoder models. With
  /// states.segment_length, each time the tokens consumed reach a multiple
  /// of it the segment ends as in training: memories are written
  /// (SegmentMemoryState::EndSegment: knn, infinite; an XL cache keeps the
  /// segment), every other layer forgets it, and sinusoidal positions
  /// restart. So decoding a document token by token gives the logits
  /// ForwardSegment gives segment by segment.
  at::Tensor DecodeStep(const at::Tensor& tokens, const at::Tensor& memory,
                        const at::Tensor& source, TransformerDecodeStates& states);
  /// `segment_length` > 0 (decoder-only models): see DecodeStep.
  TransformerDecodeStates NewDecodeStates(int64_t batch, int64_t segment_length = 0);

  /// Decoder-only training and evaluation over document streams, one
  /// segment per step. States exist only for the layers that carry something
  /// to the next segment (AttentionImpl::NewSegmentState: knn and infinite
  /// memories, XL caches); the others are null and attend within the
  /// segment. Sinusoidal positions restart at 0 in every segment: the past
  /// is reachable through the memories and caches only. Without `knn_memory` each
  /// knn layer gets its own ExactKnnMemory (rows = streams 0..batch-1, scope
  /// stream); with it, the layer memory it returns for the layer
  /// (memory/knn_layer_memory.h). With `use_memory` false
  /// (--use_memory=false) the memory layers carry nothing across segments:
  /// a knn layer's state has no memory (it attends within its window, so an
  /// XL cache still works) and an infinite layer gets no state; XL caches
  /// are kept, so "memory off" compares the same model without its memory.
  TransformerDecodeStates NewSegmentStates(int64_t batch,
                                           const memory::KnnLayerMemories& knn_memory = nullptr,
                                           bool use_memory = true);
  /// Rows where `starts` ([B] bool) is true begin a new document: their
  /// memories are cleared.
  void StartDocuments(TransformerDecodeStates& states, const at::Tensor& starts);
  /// Logits [B, L, vocab] of one segment [B, L]. Its queries search the
  /// memories as they were before it; afterwards the memories hold it.
  at::Tensor ForwardSegment(const at::Tensor& tokens, TransformerDecodeStates& states,
                            const at::Tensor& logits_at = {});

  const TransformerOptions& options() const { return options_; }
  /// One line per layer: its kinds and parameter count, and the total.
  std::string ParameterReport();

 private:
  at::Tensor Embed(const at::Tensor& tokens, int64_t position_offset);
  at::Tensor Logits(const at::Tensor& hidden);
  at::Tensor RunDecoder(const at::Tensor& tokens, int64_t position_offset, const at::Tensor& memory,
                        const at::Tensor& source, TransformerDecodeStates* states,
                        const at::Tensor& logits_at = {});
  /// DecodeStep's segment boundary for `rows` rows.
  void EndDecodedSegment(TransformerDecodeStates& states, int64_t rows);

  TransformerOptions options_;
  torch::nn::Embedding embedding_{nullptr};
  torch::nn::Linear output_{nullptr};  // only without tied embeddings
  torch::nn::ModuleList encoder_{nullptr}, decoder_{nullptr};
  torch::nn::LayerNorm encoder_norm_{nullptr}, decoder_norm_{nullptr};
  at::Tensor linformer_projection_;  // only with layerwise Linformer sharing
};
TORCH_MODULE(Transformer);

/// Builds a Transformer; kInvalidArgument / kFailedPrecondition naming the
/// option or layer for bad configurations.
absl::StatusOr<Transformer> MakeTransformer(const TransformerOptions& options);

/// The self-attention kind of decoder layer `layer`: its layer_attention
/// entry, else options.attention.
const std::string& DecoderSelfAttentionKind(const TransformerOptions& options, int64_t layer);

/// The decoder layers of `options` whose self-attention is knn.
std::vector<int64_t> KnnLayers(const TransformerOptions& options);

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_TRANSFORMER_H_
