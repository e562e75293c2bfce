#include "model/transformer.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/init.h>

#include <cmath>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/knn_attention.h"
#include "model/linformer_attention.h"
#include "model/positions.h"
#include "nlohmann/json.hpp"

namespace memtrain::model {
namespace {

namespace F = torch::nn::functional;

// `options` with positions resolved (kAuto: rotary for a decoder-only model
// whose decoder self-attention kinds all take it), and checked against the
// XL cache's needs.
TransformerOptions Resolved(TransformerOptions options) {
  if (options.positions == Positions::kAuto) {
    bool rotary = options.encoder_layers == 0;
    for (int64_t i = 0; i < options.decoder_layers && rotary; ++i) {
      rotary = SupportsRotary(DecoderSelfAttentionKind(options, i));
    }
    options.positions = rotary ? Positions::kRotary : Positions::kSinusoidal;
  }
  if (options.xl_cache) {
    TORCH_CHECK(options.encoder_layers == 0,
                "--xl_cache: the Transformer-XL cache is for decoder-only language models "
                "(--encoder_layers=0)");
    TORCH_CHECK(options.positions == Positions::kRotary,
                "--xl_cache needs --positions=rotary: sinusoidal positions restart in every "
                "segment, so the cached segment's keys would claim the current segment's "
                "positions");
  }
  return options;
}

// Self-attention layers take the model's rotary positions; the decoder's
// (causal) also take its XL cache.
std::shared_ptr<AttentionImpl> MakeLayerAttention(const TransformerOptions& options,
                                                  const std::string& kind, const std::string& layer,
                                                  bool causal, bool cross) {
  AttentionOptions attention = options.attention_options;
  attention.layer = layer;
  attention.model_dim = options.model_dim;
  attention.heads = options.heads;
  attention.dropout = options.attention_dropout;
  attention.causal = causal;
  attention.cross = cross;
  attention.rotary = !cross && options.positions == Positions::kRotary;
  attention.xl_cache = causal && !cross && options.xl_cache;
  absl::StatusOr<std::shared_ptr<AttentionImpl>> made = MakeAttention(kind, attention);
  TORCH_CHECK(made.ok(), made.status().message());
  return *made;
}

bool UsesKind(const TransformerOptions& options, const std::string& kind) {
  if (options.attention == kind) return true;
  if (options.encoder_layers > 0 && options.cross_attention == kind) return true;
  for (const auto& [layer, layer_kind] : options.layer_attention) {
    if (layer_kind == kind) return true;
  }
  return false;
}

// The flattened positions (b * n + t) where `chosen` is true; undefined when
// it is true everywhere, so that a batch without padding (or a loss counting
// every position) takes the plain path, with no gathering.
at::Tensor ChosenRows(const at::Tensor& chosen) {
  const at::Tensor rows = chosen.reshape({-1}).nonzero().squeeze(1);
  return rows.size(0) == chosen.numel() ? at::Tensor() : rows;
}

int64_t Count(torch::nn::Module& module) {
  int64_t total = 0;
  for (const at::Tensor& p : module.parameters()) total += p.numel();
  return total;
}

}  // namespace

// Variant hyper-parameters as JSON, field by field, so a checkpoint's model
// config rebuilds exactly the layers it was trained with (nlohmann finds these
// by argument-dependent lookup). A field missing from the file (written before
// the option existed) takes the option's default: the behaviour the model was
// trained with, since an option is only ever added with a default that keeps
// the old behaviour.
// The variants' enums by the names their flags use (an unknown name throws).
template <typename Enum>
void EnumToJson(nlohmann::json& j, const Enum& value) {
  j = AbslUnparseFlag(value);
}
template <typename Enum>
void EnumFromJson(const nlohmann::json& j, Enum& value) {
  std::string error;
  if (!AbslParseFlag(j.get<std::string>(), &value, &error)) throw std::invalid_argument(error);
}
inline void to_json(nlohmann::json& j, const LinformerSharing& e) { EnumToJson(j, e); }
inline void from_json(const nlohmann::json& j, LinformerSharing& e) { EnumFromJson(j, e); }
inline void to_json(nlohmann::json& j, const PerformerKernel& e) { EnumToJson(j, e); }
inline void from_json(const nlohmann::json& j, PerformerKernel& e) { EnumFromJson(j, e); }
inline void to_json(nlohmann::json& j, const Positions& e) { EnumToJson(j, e); }
inline void from_json(const nlohmann::json& j, Positions& e) { EnumFromJson(j, e); }
inline void to_json(nlohmann::json& j, const DropoutSampler& e) { EnumToJson(j, e); }
inline void from_json(const nlohmann::json& j, DropoutSampler& e) { EnumFromJson(j, e); }
// Each variant's options from its table (model/attention.h): every field
// under its member name; a field missing from the file keeps its default.
#define MEMTRAIN_FIELD_TO_JSON(variant, flag, member, help) j[#member] = o.member;
#define MEMTRAIN_FIELD_FROM_JSON(variant, flag, member, help) \
  if (j.contains(#member)) j.at(#member).get_to(o.member);
#define MEMTRAIN_VARIANT_JSON(variant, Type, TABLE)       \
  inline void to_json(nlohmann::json& j, const Type& o) { \
    j = nlohmann::json::object();                         \
    TABLE(MEMTRAIN_FIELD_TO_JSON)                         \
  }                                                       \
  inline void from_json(const nlohmann::json& j, Type& o) { TABLE(MEMTRAIN_FIELD_FROM_JSON) }
MEMTRAIN_ATTENTION_VARIANTS(MEMTRAIN_VARIANT_JSON)
#undef MEMTRAIN_VARIANT_JSON
#undef MEMTRAIN_FIELD_FROM_JSON
#undef MEMTRAIN_FIELD_TO_JSON

namespace {

nlohmann::json VariantOptionsToJson(const AttentionOptions& a) {
  nlohmann::json j = nlohmann::json::object();
#define MEMTRAIN_VARIANT_TO_JSON(variant, Type, TABLE) j[#variant] = a.variant;
  MEMTRAIN_ATTENTION_VARIANTS(MEMTRAIN_VARIANT_TO_JSON)
#undef MEMTRAIN_VARIANT_TO_JSON
  return j;
}

void VariantOptionsFromJson(const nlohmann::json& j, AttentionOptions* a) {
#define MEMTRAIN_VARIANT_FROM_JSON(variant, Type, TABLE) \
  if (j.contains(#variant)) j.at(#variant).get_to(a->variant);
  MEMTRAIN_ATTENTION_VARIANTS(MEMTRAIN_VARIANT_FROM_JSON)
#undef MEMTRAIN_VARIANT_FROM_JSON
}

}  // namespace

// ---- options as JSON ----------------------------------------------------------------

std::string TransformerOptionsToJson(const TransformerOptions& o) {
  nlohmann::json layers = nlohmann::json::object();
  for (const auto& [index, kind] : o.layer_attention) layers[std::to_string(index)] = kind;
  nlohmann::json json = nlohmann::json::object();
#define MEMTRAIN_OPTION_TO_JSON(name, help) json[#name] = o.name;
  MEMTRAIN_TRANSFORMER_OPTIONS(MEMTRAIN_OPTION_TO_JSON)
#undef MEMTRAIN_OPTION_TO_JSON
  json["layer_attention"] = layers;
  json["attention_options"] = VariantOptionsToJson(o.attention_options);
  return json.dump();
}

absl::StatusOr<TransformerOptions> TransformerOptionsFromJson(const std::string& text) {
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return absl::InvalidArgumentError("model config is not a JSON object");
  std::vector<std::string> known = {"layer_attention", "attention_options"};
#define MEMTRAIN_KNOWN_OPTION(name, help) known.push_back(#name);
  MEMTRAIN_TRANSFORMER_OPTIONS(MEMTRAIN_KNOWN_OPTION)
#undef MEMTRAIN_KNOWN_OPTION
  for (const auto& [key, value] : json.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return absl::InvalidArgumentError(absl::StrCat("model config: unknown field '", key, "'"));
    }
  }
  // Missing fields keep TransformerOptions' defaults (see above).
  TransformerOptions o;
  try {
#define MEMTRAIN_OPTION_FROM_JSON(name, help) o.name = json.value(#name, o.name);
    MEMTRAIN_TRANSFORMER_OPTIONS(MEMTRAIN_OPTION_FROM_JSON)
#undef MEMTRAIN_OPTION_FROM_JSON
    if (json.contains("layer_attention")) {
      o.layer_attention.clear();
      for (const auto& [index, kind] : json.at("layer_attention").items()) {
        o.layer_attention[std::stoll(index)] = kind.get<std::string>();
      }
    }
    if (json.contains("attention_options"))
      VariantOptionsFromJson(json.at("attention_options"), &o.attention_options);
  } catch (const std::exception& error) {
    return absl::InvalidArgumentError(absl::StrCat("model config: ", error.what()));
  }
  return o;
}

// ---- block ----------------------------------------------------------------------------

TransformerBlockImpl::TransformerBlockImpl(const TransformerOptions& options,
                                           std::shared_ptr<AttentionImpl> self_attention,
                                           std::shared_ptr<AttentionImpl> cross_attention)
    : dropout_(options.dropout), dropout_sampler_(options.dropout_sampler) {
  const std::vector<int64_t> width{options.model_dim};
  self_attention_ = register_module("self_attention", std::move(self_attention));
  self_norm_ =
      register_module("self_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions(width)));
  if (cross_attention) {
    cross_attention_ = register_module("cross_attention", std::move(cross_attention));
    cross_norm_ =
        register_module("cross_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions(width)));
  }
  ffn_norm_ = register_module("ffn_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions(width)));
  ffn_in_ = register_module("ffn_in", torch::nn::Linear(options.model_dim, options.ffn_dim));
  ffn_out_ = register_module("ffn_out", torch::nn::Linear(options.ffn_dim, options.model_dim));
}

at::Tensor TransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& padding,
                                         bool causal, const at::Tensor& memory,
                                         const at::Tensor& memory_padding, DecodeState* self_state,
                                         DecodeState* cross_state,
                                         const at::Tensor& computed_rows) {
  const auto dropout = [&](const at::Tensor& t) {
    return Dropout(t, dropout_, is_training(), dropout_sampler_);
  };
  AttentionCall self;
  self.query = self_norm_(x);
  self.key_padding = padding;
  self.causal = causal;
  self.state = self_state;
  at::Tensor h = x + dropout(self_attention_->forward(self));
  if (cross_attention_) {
    AttentionCall cross;
    cross.query = cross_norm_(h);
    cross.memory = memory;
    cross.key_padding = memory_padding;
    cross.state = cross_state;
    h = h + dropout(cross_attention_->forward(cross));
  }
  if (!computed_rows.defined())
    return h + dropout(ffn_out_(dropout(F::relu(ffn_in_(ffn_norm_(h))))));
  const at::Tensor flat = h.reshape({-1, h.size(-1)});
  const auto dropout_rows = [&](const at::Tensor& t) {
    return DropoutRows(t, computed_rows, flat.size(0), dropout_, is_training(), dropout_sampler_);
  };
  const at::Tensor computed = flat.index_select(0, computed_rows);
  return flat
      .index_add(0, computed_rows,
                 dropout_rows(ffn_out_(dropout_rows(F::relu(ffn_in_(ffn_norm_(computed)))))))
      .view(h.sizes());
}

// ---- model ----------------------------------------------------------------------------

void TransformerDecodeStates::Reorder(const at::Tensor& indices) {
  for (auto& state : self) {
    if (state) state->Reorder(indices);
  }
  for (auto& state : cross) {
    if (state) state->Reorder(indices);
  }
}

at::Tensor TransformerDecodeStates::AuxiliaryLoss() const {
  at::Tensor total;
  for (const auto& state : self) {
    const auto* memory = dynamic_cast<const SegmentMemoryState*>(state.get());
    const at::Tensor term = memory != nullptr ? memory->AuxiliaryLoss() : at::Tensor();
    if (term.defined()) total = total.defined() ? total + term : term;
  }
  return total;
}

TransformerImpl::TransformerImpl(const TransformerOptions& requested)
    : options_(Resolved(requested)) {
  const TransformerOptions& options = options_;
  TORCH_CHECK(options.vocab_size > 0 && options.model_dim > 0 && options.decoder_layers > 0 &&
                  options.encoder_layers >= 0 && options.ffn_dim > 0,
              "transformer: vocab_size, model_dim, ffn_dim and decoder_layers must be positive");
  TORCH_CHECK(options.positions != Positions::kSinusoidal || options.model_dim % 2 == 0,
              "transformer: model_dim must be even (sinusoidal positions)");
  for (const auto& [index, kind] : options.layer_attention) {
    TORCH_CHECK(index >= 0 && index < options.decoder_layers, "layer_attention: decoder layer ",
                index, " does not exist (the decoder has ", options.decoder_layers, " layers)");
  }
  embedding_ =
      register_module("embedding", torch::nn::Embedding(options.vocab_size, options.model_dim));
  torch::nn::init::normal_(embedding_->weight, 0.0, std::pow(options.model_dim, -0.5));
  if (!options.tie_embeddings) {
    output_ = register_module("output", torch::nn::Linear(options.model_dim, options.vocab_size));
  }
  const bool encoder_decoder = options.encoder_layers > 0;
  const std::vector<int64_t> width{options.model_dim};
  // Layerwise Linformer sharing: one projection for the whole model, so it is
  // registered here rather than in any layer.
  TransformerOptions layer_options = options;
  LinformerOptions& linformer = layer_options.attention_options.linformer;
  if (linformer.sharing == LinformerSharing::kLayerwise && UsesKind(options, "linformer")) {
    linformer_projection_ = linformer.shared_projection =
        register_parameter("linformer_projection", MakeLinformerProjection(linformer, 1),
                           !linformer.freeze_projection);
  }
  encoder_ = register_module("encoder", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.encoder_layers; ++i) {
    const std::string name = absl::StrCat("encoder.", i);
    encoder_->push_back(TransformerBlock(
        options, MakeLayerAttention(layer_options, options.attention, name + ".self", false, false),
        nullptr));
  }
  decoder_ = register_module("decoder", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.decoder_layers; ++i) {
    const std::string name = absl::StrCat("decoder.", i);
    const std::string& self_kind = DecoderSelfAttentionKind(options, i);
    decoder_->push_back(TransformerBlock(
        options, MakeLayerAttention(layer_options, self_kind, name + ".self", true, false),
        encoder_decoder ? MakeLayerAttention(layer_options, options.cross_attention,
                                             name + ".cross", false, true)
                        : nullptr));
  }
  if (encoder_decoder) {
    encoder_norm_ =
        register_module("encoder_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions(width)));
  }
  decoder_norm_ =
      register_module("decoder_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions(width)));
}

at::Tensor TransformerImpl::Embed(const at::Tensor& tokens, int64_t position_offset) {
  at::Tensor x = embedding_(tokens) * std::sqrt(static_cast<double>(options_.model_dim));
  if (options_.positions == Positions::kSinusoidal) {
    x = x + SinusoidalPositions(position_offset, tokens.size(1), options_.model_dim, x.options())
                .unsqueeze(0);
  }
  return Dropout(x, options_.dropout, is_training(), options_.dropout_sampler);
}

at::Tensor TransformerImpl::Logits(const at::Tensor& hidden) {
  const at::Tensor normed = decoder_norm_(hidden);
  return options_.tie_embeddings ? at::matmul(normed, embedding_->weight.t()) : output_(normed);
}

at::Tensor TransformerImpl::Encode(const at::Tensor& source) {
  TORCH_CHECK(options_.encoder_layers > 0, "Encode: this is a decoder-only model");
  at::Tensor x = Embed(source, 0);
  const at::Tensor padding = source.eq(options_.pad_id);
  const at::Tensor computed_rows = ChosenRows(padding.logical_not());
  for (const auto& module : *encoder_) {
    x = module->as<TransformerBlockImpl>()->forward(x, padding, false, {}, {}, nullptr, nullptr,
                                                    computed_rows);
  }
  return encoder_norm_(x);
}

at::Tensor TransformerImpl::RunDecoder(const at::Tensor& tokens, int64_t position_offset,
                                       const at::Tensor& memory, const at::Tensor& source,
                                       TransformerDecodeStates* states,
                                       const at::Tensor& logits_at) {
  const bool encoder_decoder = options_.encoder_layers > 0;
  TORCH_CHECK(!encoder_decoder || (memory.defined() && source.defined()),
              "an encoder-decoder model decodes with the encoder output and the source");
  TORCH_CHECK(!logits_at.defined() ||
                  (logits_at.scalar_type() == at::kBool && logits_at.sizes() == tokens.sizes()),
              "logits_at must be a bool mask shaped like the tokens ", tokens.sizes(), "; got ",
              logits_at.scalar_type(), " ", logits_at.sizes());
  // Both row lists before the layers run: on a GPU, nonzero waits for the
  // device, which costs nothing while its queue is still empty.
  const at::Tensor logit_rows = logits_at.defined() ? ChosenRows(logits_at) : at::Tensor();
  at::Tensor x = Embed(tokens, position_offset);
  const at::Tensor padding = tokens.eq(options_.pad_id);
  const at::Tensor computed_rows = ChosenRows(padding.logical_not());
  const at::Tensor memory_padding = encoder_decoder ? source.eq(options_.pad_id) : at::Tensor();
  for (size_t i = 0; i < decoder_->size(); ++i) {
    x = decoder_[i]->as<TransformerBlockImpl>()->forward(
        x, padding, /*causal=*/true, memory, memory_padding,
        states ? states->self[i].get() : nullptr, states ? states->cross[i].get() : nullptr,
        computed_rows);
  }
  if (!logits_at.defined()) return Logits(x);
  // index_select's backward scatters the rows' gradients back, the others
  // zero. Every row chosen: all of them, [B * n, vocab], without a copy.
  const at::Tensor logits =
      Logits(logit_rows.defined() ? x.reshape({-1, x.size(2)}).index_select(0, logit_rows) : x);
  return logits.reshape({-1, logits.size(-1)});
}

at::Tensor TransformerImpl::ForwardLm(const at::Tensor& tokens, int64_t position_offset,
                                      const at::Tensor& logits_at) {
  TORCH_CHECK(options_.encoder_layers == 0, "ForwardLm: this is an encoder-decoder model");
  return RunDecoder(tokens, position_offset, {}, {}, nullptr, logits_at);
}

at::Tensor TransformerImpl::Decode(const at::Tensor& target_input, const at::Tensor& memory,
                                   const at::Tensor& source, const at::Tensor& logits_at) {
  return RunDecoder(target_input, 0, memory, source, nullptr, logits_at);
}

at::Tensor TransformerImpl::DecodeStep(const at::Tensor& tokens, const at::Tensor& memory,
                                       const at::Tensor& source, TransformerDecodeStates& states) {
  const int64_t segment = states.segment_length;
  if (segment <= 0) {
    at::Tensor logits = RunDecoder(tokens, states.position, memory, source, &states);
    states.position += tokens.size(1);
    return logits;
  }
  // The tokens in pieces that end at segment boundaries.
  std::vector<at::Tensor> logits;
  for (int64_t done = 0; done < tokens.size(1);) {
    const int64_t offset = states.position % segment;
    const int64_t take = std::min(tokens.size(1) - done, segment - offset);
    logits.push_back(RunDecoder(tokens.narrow(1, done, take), offset, memory, source, &states));
    states.position += take;
    done += take;
    if (states.position % segment == 0) EndDecodedSegment(states, tokens.size(0));
  }
  return logits.size() == 1 ? logits.front() : at::cat(logits, 1);
}

void TransformerImpl::EndDecodedSegment(TransformerDecodeStates& states, int64_t rows) {
  for (size_t i = 0; i < states.self.size(); ++i) {
    if (auto* carried = dynamic_cast<SegmentMemoryState*>(states.self[i].get())) {
      const absl::Status ended = carried->EndSegment();
      TORCH_CHECK(ended.ok(), "decoder.", i, ": ", ended.message());
    } else {
      // Attends within a segment only, as ForwardSegment gives it no state.
      states.self[i] = decoder_[i]->as<TransformerBlockImpl>()->self_attention().NewState(rows);
    }
  }
}

TransformerDecodeStates TransformerImpl::NewDecodeStates(int64_t batch, int64_t segment_length) {
  TORCH_CHECK(segment_length == 0 || options_.encoder_layers == 0,
              "NewDecodeStates: segments are for decoder-only models");
  TransformerDecodeStates states;
  states.segment_length = segment_length;
  for (const auto& module : *decoder_) {
    auto block = std::dynamic_pointer_cast<TransformerBlockImpl>(module);
    states.self.push_back(block->self_attention().NewState(batch));
    states.cross.push_back(block->cross_attention() ? block->cross_attention()->NewState(batch)
                                                    : nullptr);
  }
  return states;
}

TransformerDecodeStates TransformerImpl::NewSegmentStates(
    int64_t batch, const memory::KnnLayerMemories& knn_memory, bool use_memory) {
  TORCH_CHECK(options_.encoder_layers == 0,
              "NewSegmentStates: segments are for decoder-only models");
  TransformerDecodeStates states;
  for (size_t i = 0; i < decoder_->size(); ++i) {
    AttentionImpl& layer = decoder_[i]->as<TransformerBlockImpl>()->self_attention();
    auto* knn = dynamic_cast<KnnAttentionImpl*>(&layer);
    if (!use_memory) {
      if (knn != nullptr) {
        memory::KnnLayerMemory no_memory;  // memory null: its window only
        for (int64_t b = 0; b < batch; ++b) no_memory.streams.push_back(b);
        states.self.push_back(knn->NewState(std::move(no_memory)));
      } else {
        // Without memories only an XL cache outlives a segment (a model with
        // --xl_cache has softmax and knn layers only: the registry refuses
        // the rest).
        states.self.push_back(options_.xl_cache ? layer.NewSegmentState(batch) : nullptr);
      }
    } else if (knn != nullptr && knn_memory) {
      memory::KnnLayerMemory layer_memory = knn_memory(static_cast<int64_t>(i), batch);
      TORCH_CHECK(layer_memory.streams.size() == static_cast<size_t>(batch), "decoder.", i,
                  ": the knn layer memory has ", layer_memory.streams.size(), " streams for ",
                  batch, " rows");
      states.self.push_back(knn->NewState(std::move(layer_memory)));
    } else {
      states.self.push_back(layer.NewSegmentState(batch));
    }
    states.cross.push_back(nullptr);
  }
  return states;
}

void TransformerImpl::StartDocuments(TransformerDecodeStates& states, const at::Tensor& starts) {
  for (auto& state : states.self) {
    if (state) static_cast<SegmentMemoryState&>(*state).NewDocument(starts);
  }
}

at::Tensor TransformerImpl::ForwardSegment(const at::Tensor& tokens,
                                           TransformerDecodeStates& states,
                                           const at::Tensor& logits_at) {
  at::Tensor logits = RunDecoder(tokens, 0, {}, {}, &states, logits_at);
  for (size_t i = 0; i < states.self.size(); ++i) {
    if (!states.self[i]) continue;
    const absl::Status written = static_cast<SegmentMemoryState&>(*states.self[i]).EndSegment();
    TORCH_CHECK(written.ok(), "decoder.", i, ": ", written.message());
  }
  return logits;
}

std::string TransformerImpl::ParameterReport() {
  std::ostringstream report;
  report << absl::StrFormat("  %-14s %12d\n", "embedding", Count(*embedding_));
  for (size_t i = 0; i < encoder_->size(); ++i) {
    auto block = std::dynamic_pointer_cast<TransformerBlockImpl>(encoder_[i]);
    report << absl::StrFormat("  %-14s %12d  self=%s\n", absl::StrCat("encoder.", i), Count(*block),
                              block->self_attention().kind());
  }
  for (size_t i = 0; i < decoder_->size(); ++i) {
    auto block = std::dynamic_pointer_cast<TransformerBlockImpl>(decoder_[i]);
    report << absl::StrFormat(
        "  %-14s %12d  self=%s%s\n", absl::StrCat("decoder.", i), Count(*block),
        block->self_attention().kind(),
        block->cross_attention() ? absl::StrCat(" cross=", block->cross_attention()->kind()) : "");
  }
  if (linformer_projection_.defined()) {
    report << absl::StrFormat("  %-14s %12d  shared by every linformer layer\n", "linformer_proj",
                              linformer_projection_.numel());
  }
  if (output_) report << absl::StrFormat("  %-14s %12d\n", "output", Count(*output_));
  report << absl::StrFormat("  %-14s %12d\n", "total", Count(*this));
  return report.str();
}

const std::string& DecoderSelfAttentionKind(const TransformerOptions& options, int64_t layer) {
  auto kind = options.layer_attention.find(layer);
  return kind == options.layer_attention.end() ? options.attention : kind->second;
}

std::vector<int64_t> KnnLayers(const TransformerOptions& options) {
  std::vector<int64_t> layers;
  for (int64_t i = 0; i < options.decoder_layers; ++i) {
    if (DecoderSelfAttentionKind(options, i) == "knn") layers.push_back(i);
  }
  return layers;
}

absl::StatusOr<Transformer> MakeTransformer(const TransformerOptions& options) {
  try {
    return Transformer(options);
  } catch (const c10::Error& error) {
    return absl::InvalidArgumentError(error.what_without_backtrace());
  }
}

}  // namespace memtrain::model
