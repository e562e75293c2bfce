// The Transformer around the attention variants: decoding token by token
// equals the full (teacher-forced) forward, beams reorder, parameter counts
// follow the formula, configs round-trip and bad ones are named.
#include "model/transformer.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "absl/strings/str_cat.h"
#include "memory/exact_knn_memory.h"

namespace memtrain::model {
namespace {

using ::testing::HasSubstr;

TransformerOptions Small(int64_t encoder_layers) {
  TransformerOptions o;
  o.vocab_size = 50;
  o.model_dim = 16;
  o.heads = 4;
  o.ffn_dim = 32;
  o.encoder_layers = encoder_layers;
  o.decoder_layers = 2;
  o.dropout = 0.1;  // must not matter in eval mode
  return o;
}

Transformer Build(const TransformerOptions& options) {
  at::manual_seed(7);
  auto model = MakeTransformer(options);
  EXPECT_TRUE(model.ok()) << model.status();
  (*model)->to(at::kDouble);
  (*model)->eval();
  return *model;
}

TEST(TransformerTest, DecoderOnlyStepByStepEqualsTheFullForward) {
  Transformer model = Build(Small(0));
  const at::Tensor tokens = at::randint(1, 50, {3, 9}, at::kLong);
  const at::Tensor full = model->ForwardLm(tokens);
  EXPECT_EQ(full.sizes(), (std::vector<int64_t>{3, 9, 50}));
  TransformerDecodeStates states = model->NewDecodeStates(3);
  std::vector<at::Tensor> steps;
  for (int64_t t = 0; t < 9; ++t)
    steps.push_back(model->DecodeStep(tokens.slice(1, t, t + 1), {}, {}, states));
  EXPECT_TRUE(at::allclose(at::cat(steps, 1), full, 1e-9, 1e-10));
}

TEST(TransformerTest, LogitsAtGivesTheChosenPositionsRowsInRowMajorOrder) {
  const at::Tensor tokens = at::randint(1, 50, {3, 9}, at::kLong);
  const at::Tensor chosen = at::rand({3, 9}) > 0.5;
  Transformer lm = Build(Small(0));
  const at::Tensor rows = lm->ForwardLm(tokens, 0, chosen);
  EXPECT_EQ(rows.sizes(), (std::vector<int64_t>{chosen.sum().item<int64_t>(), 50}));
  EXPECT_TRUE(at::allclose(rows, lm->ForwardLm(tokens).index({chosen}), 1e-12, 1e-12));

  Transformer translation = Build(Small(2));
  const at::Tensor source = at::randint(1, 50, {3, 6}, at::kLong);
  const at::Tensor memory = translation->Encode(source);
  EXPECT_TRUE(at::allclose(translation->Decode(tokens, memory, source, chosen),
                           translation->Decode(tokens, memory, source).index({chosen}), 1e-12,
                           1e-12));
  EXPECT_THROW(lm->ForwardLm(tokens, 0, chosen.narrow(1, 0, 8)), c10::Error)
      << "a mask of another shape";
  EXPECT_TRUE(at::allclose(lm->ForwardLm(tokens, 0, at::ones({3, 9}, at::kBool)),
                           lm->ForwardLm(tokens).view({27, 50}), 1e-12, 1e-12))
      << "every position chosen: still [T, vocab]";
}

TEST(TransformerTest, EveryCausalKindDecodesStepByStepInsideTheModel) {
  for (const std::string& kind : AttentionKinds()) {
    if (kind == "linformer") continue;  // no causal form; covered below as an encoder
    TransformerOptions o = Small(0);
    o.attention = kind;
    o.layer_attention = {{1, "softmax"}};  // mixed kinds in one model
    Transformer model = Build(o);
    const at::Tensor tokens = at::randint(1, 50, {2, 7}, at::kLong);
    const at::Tensor full = model->ForwardLm(tokens);
    TransformerDecodeStates states = model->NewDecodeStates(2);
    std::vector<at::Tensor> steps;
    for (int64_t t = 0; t < 7; ++t)
      steps.push_back(model->DecodeStep(tokens.slice(1, t, t + 1), {}, {}, states));
    EXPECT_TRUE(at::allclose(at::cat(steps, 1), full, 1e-8, 1e-9)) << kind;
  }
}

TEST(TransformerTest, LinformerEncoderWithASoftmaxDecoder) {
  TransformerOptions o = Small(2);
  o.attention = "linformer";
  o.attention_options.linformer.max_length = 16;
  o.attention_options.linformer.projected_length = 4;
  o.layer_attention = {{0, "softmax"}, {1, "softmax"}};
  Transformer model = Build(o);
  const at::Tensor source = at::randint(1, 50, {2, 9}, at::kLong);
  const at::Tensor target = at::randint(1, 50, {2, 4}, at::kLong);
  EXPECT_EQ(model->Decode(target, model->Encode(source), source).sizes(),
            (std::vector<int64_t>{2, 4, 50}));
  // A linformer decoder layer is refused, naming the layer.
  o.layer_attention = {{0, "softmax"}};
  auto refused = MakeTransformer(o);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("decoder.1.self"));
}

TEST(TransformerTest, SegmentsCarryMemoryOnlyInMemoryLayersAndDocumentsClearIt) {
  for (const char* kind : {"knn", "infinite"}) {
    TransformerOptions o = Small(0);
    o.layer_attention = {{1, kind}};
    o.attention_options.knn.top_k = 4;
    o.attention_options.infinite.basis = 8;
    o.attention_options.infinite.samples = 8;
    o.attention_options.infinite.widths = {0.1,
                                           0.2};  // wide enough for 8 functions to hold 6 tokens
    Transformer model = Build(o);
    TransformerDecodeStates states = model->NewSegmentStates(2);
    ASSERT_EQ(states.self.size(), 2u);
    EXPECT_EQ(states.self[0], nullptr) << "softmax keeps nothing across segments";
    EXPECT_NE(states.self[1], nullptr) << kind;

    const at::Tensor first = at::randint(1, 50, {2, 6}, at::kLong);
    const at::Tensor second = at::randint(1, 50, {2, 6}, at::kLong);
    EXPECT_TRUE(
        at::allclose(model->ForwardSegment(first, states), model->ForwardLm(first), 1e-9, 1e-10))
        << kind << ": an empty memory must be local attention";
    const at::Tensor remembered = model->ForwardSegment(second, states);
    const at::Tensor local = model->ForwardLm(second);
    EXPECT_FALSE(at::allclose(remembered, local, 1e-6, 1e-6))
        << kind << ": the memory changed nothing";

    // Row 0 starts a new document: it forgets, row 1 still remembers.
    TransformerDecodeStates again = model->NewSegmentStates(2);
    model->ForwardSegment(first, again);
    model->StartDocuments(again, at::tensor({1, 0}).to(at::kBool));
    const at::Tensor mixed = model->ForwardSegment(second, again);
    EXPECT_TRUE(at::allclose(mixed[0], local[0], 1e-9, 1e-10)) << kind;
    EXPECT_TRUE(at::allclose(mixed[1], remembered[1], 1e-9, 1e-10)) << kind;
  }
}

TEST(TransformerTest, PositionOffsetContinuesADocument) {
  TransformerOptions o = Small(0);
  o.positions = Positions::kSinusoidal;
  Transformer model = Build(o);
  const at::Tensor tokens = at::randint(1, 50, {2, 6}, at::kLong);
  // With softmax attention a segment sees only itself, so the offset changes
  // positions only; a zero offset must equal the default.
  EXPECT_TRUE(at::allclose(model->ForwardLm(tokens, 0), model->ForwardLm(tokens)));
  EXPECT_FALSE(at::allclose(model->ForwardLm(tokens, 100), model->ForwardLm(tokens)));
}

TEST(TransformerTest, EncoderDecoderStepsEqualTeacherForcingAndBeamsReorder) {
  Transformer model = Build(Small(2));
  at::Tensor source = at::randint(1, 50, {3, 7}, at::kLong);
  source[1].slice(0, 4) = 0;  // padding
  const at::Tensor target = at::randint(1, 50, {3, 5}, at::kLong);
  const at::Tensor memory = model->Encode(source);
  const at::Tensor full = model->Decode(target, memory, source);

  TransformerDecodeStates states = model->NewDecodeStates(3);
  std::vector<at::Tensor> steps;
  for (int64_t t = 0; t < 5; ++t) {
    steps.push_back(model->DecodeStep(target.slice(1, t, t + 1), memory, source, states));
  }
  EXPECT_TRUE(at::allclose(at::cat(steps, 1), full, 1e-9, 1e-10));

  // Two steps, then keep beams (2, 2, 0) and continue.
  TransformerDecodeStates beams = model->NewDecodeStates(3);
  model->DecodeStep(target.slice(1, 0, 2), memory, source, beams);
  const at::Tensor rows = at::tensor({2, 2, 0}, at::kLong);
  beams.Reorder(rows);
  const at::Tensor rest =
      model->DecodeStep(target.index_select(0, rows).slice(1, 2), memory.index_select(0, rows),
                        source.index_select(0, rows), beams);
  EXPECT_TRUE(at::allclose(rest, full.index_select(0, rows).slice(1, 2), 1e-9, 1e-10));
}

// For every kind the encoder can run (the model skips the padding's
// feed-forward too: computed_rows).
TEST(TransformerTest, SourcePaddingIsInvisible) {
  int64_t kinds = 0;
  for (const std::string& kind : AttentionKinds()) {
    TransformerOptions o = Small(1);
    o.attention = kind;
    o.attention_options.linformer.max_length = 16;
    o.attention_options.linformer.projected_length = 4;
    o.layer_attention = {{0, "softmax"}, {1, "softmax"}};  // the decoder's
    if (!MakeTransformer(o).ok()) continue;                // not an encoder kind
    ++kinds;
    Transformer model = Build(o);
    const at::Tensor source = at::randint(1, 50, {1, 5}, at::kLong);
    const at::Tensor padded = at::cat({source, at::zeros({1, 3}, at::kLong)}, 1);
    const at::Tensor target = at::randint(1, 50, {1, 4}, at::kLong);
    const at::Tensor a = model->Decode(target, model->Encode(source), source);
    const at::Tensor b = model->Decode(target, model->Encode(padded), padded);
    EXPECT_TRUE(at::allclose(a, b, 1e-9, 1e-10)) << kind;
  }
  EXPECT_GE(kinds, 4) << "softmax, linformer, performer and memsizer encode";
}

// The model computes no feed-forward for padding (TransformerBlockImpl's
// computed_rows): every causal kind, decoder-only and encoder-decoder, gives
// the unpadded positions of a right-padded batch the logits each row has
// alone, without padding (where every position takes the plain path).
TEST(TransformerTest, DecoderPaddingIsInvisible) {
  for (const std::string& kind : AttentionKinds()) {
    if (kind == "linformer") continue;  // no causal form
    for (const int64_t encoder_layers : {0, 1}) {
      TransformerOptions o = Small(encoder_layers);
      o.attention = kind;
      Transformer model = Build(o);
      at::Tensor tokens = at::randint(1, 50, {2, 8}, at::kLong);
      tokens[1].slice(0, 5) = 0;  // padding
      const at::Tensor source = at::randint(1, 50, {2, 6}, at::kLong);
      const auto logits = [&](const at::Tensor& target, const at::Tensor& src) {
        return encoder_layers == 0 ? model->ForwardLm(target)
                                   : model->Decode(target, model->Encode(src), src);
      };
      const at::Tensor padded = logits(tokens, source);
      for (int64_t row = 0; row < 2; ++row) {
        const int64_t length = row == 0 ? 8 : 5;
        const at::Tensor alone =
            logits(tokens.narrow(0, row, 1).narrow(1, 0, length), source.narrow(0, row, 1));
        EXPECT_TRUE(at::allclose(padded.narrow(0, row, 1).narrow(1, 0, length), alone, 1e-9, 1e-10))
            << kind << " encoder_layers " << encoder_layers << " row " << row;
      }
    }
  }
}

// Nothing to compute: every position padding, no logits asked for (the end of
// a stream's data). Forward and backward still run, and give zero gradients.
TEST(TransformerTest, AnAllPaddingBatchTrainsNothing) {
  TransformerOptions o = Small(0);
  Transformer model = Build(o);
  model->to(at::kFloat);
  model->train();
  const at::Tensor tokens = at::zeros({2, 5}, at::kLong);  // pad_id 0
  const at::Tensor logits = model->ForwardLm(tokens, 0, at::zeros({2, 5}, at::kBool));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{0, 50}));
  logits.sum().backward();
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_EQ(p.value().grad().abs().sum().item<float>(), 0.0f) << p.key();
  }
}

// On a GPU (eval mode): the padding skipping and logits_at give the CPU's
// logits, encoder and decoder padded. Skips without a GPU (scripts/gpu-check
// runs it).
TEST(TransformerTest, SkippingPaddingOnTheGpuGivesTheCpusLogits_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no GPU";
  Transformer model = Build(Small(1));
  model->to(at::kFloat);
  at::Tensor target = at::randint(1, 50, {2, 8}, at::kLong);
  target[1].slice(0, 5) = 0;  // padding
  at::Tensor source = at::randint(1, 50, {2, 6}, at::kLong);
  source[0].slice(0, 4) = 0;
  const at::Tensor counted = target.ne(0);
  const at::Tensor on_cpu = model->Decode(target, model->Encode(source), source, counted);
  model->to(at::kCUDA);
  const at::Tensor gpu_target = target.cuda(), gpu_source = source.cuda();
  const at::Tensor on_gpu =
      model->Decode(gpu_target, model->Encode(gpu_source), gpu_source, counted.cuda());
  ASSERT_EQ(on_gpu.sizes(), on_cpu.sizes());
  EXPECT_TRUE(at::allclose(on_gpu.cpu(), on_cpu, 1e-4, 1e-5));
}

// In training, with dropout: the feed-forward of only the chosen rows gives
// those rows what the block gives them computing every position.
TEST(TransformerTest, ABlockComputingSomeRowsGivesThemWhatItGivesThemComputingAll) {
  TransformerOptions o = Small(0);
  o.dropout = 0.3;
  Transformer model = Build(o);
  model->to(at::kFloat);  // Philox masks (doubles take at::dropout's)
  model->train();
  auto& block = *model->named_modules()["decoder.0"]->as<TransformerBlockImpl>();
  const at::Tensor x = at::randn({2, 6, 16});
  at::Tensor padding = at::zeros({2, 6}, at::kBool);
  padding[0].slice(0, 3) = true;  // rows with a gap: each mask must come from its position
  const at::Tensor rows = at::tensor({0, 1, 2, 6, 7, 8, 9, 10, 11}, at::kLong);
  at::manual_seed(21);
  const at::Tensor every = block.forward(x, padding, true, {}, {}, nullptr, nullptr);
  at::manual_seed(21);
  const at::Tensor some = block.forward(x, padding, true, {}, {}, nullptr, nullptr, rows);
  EXPECT_TRUE(at::allclose(some.reshape({12, 16}).index_select(0, rows),
                           every.reshape({12, 16}).index_select(0, rows), 1e-5, 1e-6));
}

// Softmax layers: 4 projections (D*D + D), 2 feed-forward linears, and 2 or 3
// LayerNorms (2D each) per block.
int64_t ExpectedParameters(const TransformerOptions& o) {
  const int64_t d = o.model_dim, f = o.ffn_dim;
  const int64_t attention = 4 * (d * d + d), ffn = d * f + f + f * d + d, norm = 2 * d;
  const int64_t encoder_block = attention + ffn + 2 * norm;
  const int64_t decoder_block =
      attention + ffn + 2 * norm + (o.encoder_layers > 0 ? attention + norm : 0);
  int64_t total =
      o.vocab_size * d + o.encoder_layers * encoder_block + o.decoder_layers * decoder_block;
  total += norm + (o.encoder_layers > 0 ? norm : 0);  // final norms
  if (!o.tie_embeddings) total += d * o.vocab_size + o.vocab_size;
  return total;
}

TEST(TransformerTest, ParameterCountsFollowTheFormula) {
  for (int64_t encoder_layers : {0, 2}) {
    for (bool tied : {true, false}) {
      TransformerOptions o = Small(encoder_layers);
      o.tie_embeddings = tied;
      Transformer model = Build(o);
      int64_t counted = 0;
      for (const at::Tensor& p : model->parameters()) counted += p.numel();
      EXPECT_EQ(counted, ExpectedParameters(o)) << "encoder " << encoder_layers << " tied " << tied;
      EXPECT_THAT(model->ParameterReport(), HasSubstr(std::to_string(counted)));
      EXPECT_THAT(model->ParameterReport(), HasSubstr("self=softmax"));
    }
  }
}

TEST(TransformerTest, LayerwiseLinformerSharingIsOneParameterTrainedByEveryLayer) {
  TransformerOptions o = Small(2);
  o.attention = "linformer";
  o.cross_attention = "linformer";
  o.attention_options.linformer.sharing = LinformerSharing::kLayerwise;
  o.attention_options.linformer.max_length = 12;
  o.attention_options.linformer.projected_length = 4;
  o.layer_attention = {{0, "softmax"}, {1, "softmax"}};  // linformer has no causal form
  Transformer model = Build(o);
  std::vector<std::string> projections;
  for (const auto& item : model->named_parameters()) {
    if (item.key().find("proj") != std::string::npos) projections.push_back(item.key());
  }
  EXPECT_EQ(projections, std::vector<std::string>{"linformer_projection"});
  EXPECT_THAT(model->ParameterReport(), HasSubstr("linformer_proj"));

  // The encoder's two layers and the decoder's two cross-attentions all read it.
  const at::Tensor source = at::randint(1, 50, {2, 10}, at::kLong);
  const at::Tensor target = at::randint(1, 50, {2, 6}, at::kLong);
  const at::Tensor before = model->Decode(target, model->Encode(source), source);
  at::Tensor projection = model->named_parameters()["linformer_projection"];
  {
    at::NoGradGuard no_grad;
    projection.mul_(2.0);
  }
  EXPECT_FALSE(at::allclose(model->Decode(target, model->Encode(source), source), before));
  model->Decode(target, model->Encode(source), source).sum().backward();
  ASSERT_TRUE(projection.grad().defined());
  EXPECT_GT(projection.grad().abs().sum().item<double>(), 0.0);

  auto back = TransformerOptionsFromJson(TransformerOptionsToJson(o));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->attention_options.linformer.sharing, LinformerSharing::kLayerwise);
}

TEST(TransformerTest, ConfigRoundTripsAndRefusesUnknownFields) {
  TransformerOptions o = Small(3);
  o.layer_attention = {{1, "softmax"}};
  o.tie_embeddings = false;
  o.attention_options.performer.features = 77;
  o.attention_options.performer.kernel = PerformerKernel::kRelu;
  o.attention_options.linformer.sharing = LinformerSharing::kKeyValue;
  o.attention_options.infinite.widths = {0.1, 0.2, 0.3};
  o.attention_options.knn.top_k = 5;
  auto back = TransformerOptionsFromJson(TransformerOptionsToJson(o));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(TransformerOptionsToJson(*back), TransformerOptionsToJson(o));
  EXPECT_EQ(back->layer_attention.at(1), "softmax");
  EXPECT_EQ(back->attention_options.performer.features, 77);
  EXPECT_EQ(back->attention_options.performer.kernel, PerformerKernel::kRelu);
  EXPECT_EQ(back->attention_options.linformer.sharing, LinformerSharing::kKeyValue);
  EXPECT_EQ(back->attention_options.infinite.widths, (std::vector<double>{0.1, 0.2, 0.3}));
  EXPECT_EQ(back->attention_options.knn.top_k, 5);
  auto bad = TransformerOptionsFromJson(R"({"vocab_size": 5, "colour": "red"})");
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("unknown field 'colour'"));
  std::string json = TransformerOptionsToJson(o);
  json.replace(json.find("\"relu\""), 6, "\"tanh\"");
  bad = TransformerOptionsFromJson(json);
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("'tanh' is not a Performer kernel: softmax, relu"));
}

// The reference's MT decoder: 4 slots in causal self-attention, 32 in
// cross-attention; a model.json from before `cross_slots` loads with one k.
TEST(TransformerTest, MemSizerCrossSlotsSizeOnlyTheCrossAttentionLayers) {
  TransformerOptions o = Small(1);
  o.attention = "memsizer";
  o.cross_attention = "memsizer";
  o.attention_options.memsizer.slots = 4;
  o.attention_options.memsizer.cross_slots = 32;
  Transformer model = Build(o);
  auto parameters = model->named_parameters();
  const int64_t heads = o.heads, width = o.model_dim;
  for (const std::string self :
       {"encoder.0.self_attention", "decoder.0.self_attention", "decoder.1.self_attention"}) {
    EXPECT_EQ(parameters[self + ".keys.weight"].sizes(), (std::vector<int64_t>{heads * 4, width}))
        << self;
    EXPECT_EQ(parameters[self + ".left.weight"].sizes(), (std::vector<int64_t>{4, width})) << self;
  }
  for (const std::string cross : {"decoder.0.cross_attention", "decoder.1.cross_attention"}) {
    EXPECT_EQ(parameters[cross + ".keys.weight"].sizes(), (std::vector<int64_t>{heads * 32, width}))
        << cross;
    EXPECT_EQ(parameters[cross + ".left_norm.weight"].sizes(), (std::vector<int64_t>{32})) << cross;
  }
  // Step-by-step decoding reads the 32-slot cross memory as the full forward.
  const at::Tensor source = at::randint(1, 50, {2, 5}, at::kLong);
  const at::Tensor target = at::randint(1, 50, {2, 6}, at::kLong);
  const at::Tensor memory = model->Encode(source);
  const at::Tensor full = model->Decode(target, memory, source);
  TransformerDecodeStates states = model->NewDecodeStates(2);
  std::vector<at::Tensor> steps;
  for (int64_t t = 0; t < 6; ++t)
    steps.push_back(model->DecodeStep(target.slice(1, t, t + 1), memory, source, states));
  EXPECT_TRUE(at::allclose(at::cat(steps, 1), full, 1e-9, 1e-10));

  auto back = TransformerOptionsFromJson(TransformerOptionsToJson(model->options()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->attention_options.memsizer.slots, 4);
  EXPECT_EQ(back->attention_options.memsizer.cross_slots, 32);
  Transformer rebuilt = Build(*back);
  EXPECT_EQ(rebuilt->named_parameters()["decoder.1.cross_attention.keys.weight"].size(0),
            heads * 32);

  std::string json = TransformerOptionsToJson(model->options());
  const std::string field = "\"cross_slots\":32,";
  ASSERT_NE(json.find(field), std::string::npos) << json;
  json.erase(json.find(field), field.size());
  auto old = TransformerOptionsFromJson(json);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->attention_options.memsizer.cross_slots, 0);
  EXPECT_EQ(Build(*old)->named_parameters()["decoder.0.cross_attention.keys.weight"].size(0),
            heads * 4);
}

TEST(TransformerTest, BadLayerChoicesAreNamed) {
  TransformerOptions o = Small(0);
  o.layer_attention = {{7, "softmax"}};
  auto model = MakeTransformer(o);
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("decoder layer 7 does not exist"));
  o.layer_attention = {{1, "nonexistent"}};
  model = MakeTransformer(o);
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("decoder.1.self"));
}

// ---- positions and the Transformer-XL cache ------------------------------------------

TEST(TransformerTest, AutoPositionsAreRotaryForDecoderOnlyModelsThatTakeThem) {
  EXPECT_EQ(Build(Small(0))->options().positions, Positions::kRotary);
  EXPECT_EQ(Build(Small(2))->options().positions, Positions::kSinusoidal) << "seq2seq as before";
  TransformerOptions o = Small(0);
  o.layer_attention = {{1, "memsizer"}};
  EXPECT_EQ(Build(o)->options().positions, Positions::kSinusoidal);
  o.positions = Positions::kRotary;
  EXPECT_THAT(std::string(MakeTransformer(o).status().message()),
              HasSubstr("decoder.1.self: memsizer attention has no rotary form"));
  // Saved with the resolved choice, so a reload builds the same model.
  o = Small(0);
  auto back = TransformerOptionsFromJson(TransformerOptionsToJson(Build(o)->options()));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->positions, Positions::kRotary);
}

TEST(TransformerTest, XlCacheRefusesWhatItCannotServe) {
  TransformerOptions o = Small(2);
  o.xl_cache = true;
  EXPECT_THAT(std::string(MakeTransformer(o).status().message()),
              HasSubstr("for decoder-only language models"));
  o = Small(0);
  o.xl_cache = true;
  o.positions = Positions::kSinusoidal;
  EXPECT_THAT(std::string(MakeTransformer(o).status().message()),
              HasSubstr("--xl_cache needs --positions=rotary"));
  o.positions = Positions::kRotary;
  o.layer_attention = {{1, "performer"}};
  o.attention_options.performer.features = 8;
  EXPECT_THAT(std::string(MakeTransformer(o).status().message()), HasSubstr("performer"));
}

// The paper's requirement on the memory: a key holds content, not where in
// its segment it was written. The same six tokens, at the start of row 0's
// segment and at its end in row 1 (after padding), must store the same keys
// with rotary positions; with sinusoidal positions they differ (the control
// that shows the check can fail).
TEST(TransformerTest, StoredKeysDoNotDependOnTheOffsetInTheSegment) {
  const at::Tensor content = at::randint(1, 50, {6}, at::kLong);
  const at::Tensor pad = at::zeros({3}, at::kLong);
  const at::Tensor tokens = at::stack({at::cat({content, pad}), at::cat({pad, content})});
  for (const Positions positions : {Positions::kRotary, Positions::kSinusoidal}) {
    TransformerOptions o = Small(0);
    o.layer_attention = {{1, "knn"}};
    o.attention_options.knn.top_k = 4;
    o.positions = positions;
    Transformer model = Build(o);
    TransformerDecodeStates states = model->NewSegmentStates(2);
    model->ForwardSegment(tokens, states);
    auto& knn = static_cast<KnnDecodeState&>(*states.self[1]);
    auto& memory = dynamic_cast<memory::ExactKnnMemory&>(knn.memory());
    const at::Tensor at_start = memory.Contents(0).first, at_end = memory.Contents(1).first;
    ASSERT_EQ(at_start.size(1), 6);
    ASSERT_EQ(at_end.size(1), 6);
    if (positions == Positions::kRotary) {
      EXPECT_TRUE(at::allclose(at_start, at_end, 1e-9, 1e-10))
          << (at_start - at_end).abs().max().item<double>();
    } else {
      EXPECT_FALSE(at::allclose(at_start, at_end, 1e-3, 1e-3)) << "control: sinusoidal keys";
    }
  }
}

// One layer with an XL cache over segments s1, s2 computes for s2 what full
// causal attention over s1 s2 computes for it: the cached keys are the ones
// s1's pass made, and rotary scores depend on distances only. For knn the
// memory is prebuilt and empty, so its local branch alone is compared.
TEST(TransformerTest, XlCacheAttendsToThePreviousSegmentAndADocumentStartClearsIt) {
  for (const char* kind : {"softmax", "knn"}) {
    TransformerOptions o = Small(0);
    o.decoder_layers = 1;
    o.attention = kind;
    o.xl_cache = true;
    Transformer model = Build(o);
    auto empty = std::make_shared<memory::ExactKnnMemory>(memory::ExactKnnMemoryOptions(8));
    const memory::KnnLayerMemories prebuilt = [&](int64_t, int64_t rows) {
      memory::KnnLayerMemory layer_memory;
      layer_memory.memory = empty;
      for (int64_t b = 0; b < rows; ++b) layer_memory.streams.push_back(b);
      layer_memory.scope = memory::KnnScope::kPrebuilt;
      return layer_memory;
    };
    const at::Tensor first = at::randint(1, 50, {2, 6}, at::kLong);
    const at::Tensor second = at::randint(1, 50, {2, 6}, at::kLong);
    const at::Tensor whole = model->ForwardLm(at::cat({first, second}, 1)).narrow(1, 6, 6);

    TransformerDecodeStates states = model->NewSegmentStates(2, prebuilt);
    ASSERT_NE(states.self[0], nullptr) << kind << ": an XL layer keeps a state";
    EXPECT_TRUE(
        at::allclose(model->ForwardSegment(first, states), model->ForwardLm(first), 1e-9, 1e-10))
        << kind;
    for (const at::Tensor& held : states.self[0]->Tensors()) {
      if (held.defined()) EXPECT_FALSE(held.requires_grad()) << kind << ": the cache is detached";
    }
    // Checkpointed and restored mid-stream, the state gives bitwise the same segment.
    auto saved = static_cast<SegmentMemoryState&>(*states.self[0]).SaveState();
    ASSERT_TRUE(saved.ok()) << saved.status();
    TransformerDecodeStates restored = model->NewSegmentStates(2, prebuilt);
    ASSERT_TRUE(static_cast<SegmentMemoryState&>(*restored.self[0]).LoadState(*saved).ok());

    const at::Tensor continued = model->ForwardSegment(second, states);
    EXPECT_TRUE(at::allclose(continued, whole, 1e-9, 1e-10))
        << kind << ": " << (continued - whole).abs().max().item<double>();
    EXPECT_TRUE(at::equal(model->ForwardSegment(second, restored), continued)) << kind;

    // Row 0 starts a new document: it sees only its segment; row 1 continues.
    TransformerDecodeStates again = model->NewSegmentStates(2, prebuilt);
    model->ForwardSegment(first, again);
    model->StartDocuments(again, at::tensor({1, 0}).to(at::kBool));
    const at::Tensor mixed = model->ForwardSegment(second, again);
    EXPECT_TRUE(at::allclose(mixed[0], model->ForwardLm(second)[0], 1e-9, 1e-10)) << kind;
    EXPECT_TRUE(at::allclose(mixed[1], whole[1], 1e-9, 1e-10)) << kind;
  }
}

// --use_memory=false: the same model without its memories. A knn layer is
// its local branch and an infinite layer keeps nothing, but an XL cache
// still reaches the previous segment (two segments through it equal one
// forward over both), and the state checkpoints without a memory.
TEST(TransformerTest, WithoutMemoriesOnlyTheXlCacheCrossesASegment) {
  const at::Tensor first = at::randint(1, 50, {2, 6}, at::kLong);
  const at::Tensor second = at::randint(1, 50, {2, 6}, at::kLong);
  for (const char* kind : {"knn", "infinite"}) {
    TransformerOptions o = Small(0);
    o.layer_attention = {{1, kind}};
    o.attention_options.infinite.basis = 8;
    o.attention_options.infinite.samples = 8;
    Transformer model = Build(o);
    TransformerDecodeStates states = model->NewSegmentStates(2, nullptr, /*use_memory=*/false);
    model->ForwardSegment(first, states);
    EXPECT_TRUE(
        at::allclose(model->ForwardSegment(second, states), model->ForwardLm(second), 1e-9, 1e-10))
        << kind << ": without memory the second segment sees only itself";
  }
  TransformerOptions o = Small(0);
  o.layer_attention = {{1, "knn"}};
  o.xl_cache = true;
  Transformer model = Build(o);
  const at::Tensor whole = model->ForwardLm(at::cat({first, second}, 1)).narrow(1, 6, 6);
  TransformerDecodeStates states = model->NewSegmentStates(2, nullptr, /*use_memory=*/false);
  model->ForwardSegment(first, states);
  auto saved = static_cast<SegmentMemoryState&>(*states.self[1]).SaveState();
  ASSERT_TRUE(saved.ok()) << saved.status();
  for (const auto& [name, tensor] : *saved) EXPECT_NE(name.rfind("memory.", 0), 0u) << name;
  const at::Tensor continued = model->ForwardSegment(second, states);
  EXPECT_TRUE(at::allclose(continued, whole, 1e-9, 1e-10))
      << "the XL cache is kept: " << (continued - whole).abs().max().item<double>();
  // With its memory the same model reads the first segment twice (memory and
  // cache): a different result, so the comparison above is not vacuous.
  TransformerDecodeStates remembering = model->NewSegmentStates(2);
  model->ForwardSegment(first, remembering);
  EXPECT_FALSE(at::allclose(model->ForwardSegment(second, remembering), whole, 1e-6, 1e-6));
  // A state saved with a memory does not load into one without.
  auto with_memory = static_cast<SegmentMemoryState&>(*remembering.self[1]).SaveState();
  ASSERT_TRUE(with_memory.ok());
  TransformerDecodeStates restored = model->NewSegmentStates(2, nullptr, /*use_memory=*/false);
  EXPECT_EQ(static_cast<SegmentMemoryState&>(*restored.self[1]).LoadState(*with_memory).code(),
            absl::StatusCode::kInvalidArgument);
}

// Generation through memory: decoding token by token (or in chunks that
// straddle a boundary) with the training segment length gives the logits
// ForwardSegment gives, memory writes, XL cache and resets included.
TEST(TransformerTest, DecodingThroughSegmentsEqualsForwardSegment) {
  for (const bool xl_cache : {false, true}) {
    for (const char* memory_kind : {"knn", "infinite"}) {
      TransformerOptions o = Small(0);
      o.decoder_layers = 3;
      o.layer_attention = {{1, memory_kind}, {2, "performer"}};
      o.positions = Positions::kSinusoidal;  // every kind decodes; offsets restart per segment
      if (xl_cache) {
        o.positions = Positions::kRotary;
        o.layer_attention = {{1, memory_kind}};
        if (std::string(memory_kind) == "infinite") continue;  // no rotary form
      }
      o.xl_cache = xl_cache;
      o.attention_options.knn.top_k = 4;
      o.attention_options.infinite.basis = 8;
      o.attention_options.infinite.samples = 8;
      o.attention_options.infinite.widths = {0.1, 0.2};
      o.attention_options.performer.features = 8;
      Transformer model = Build(o);
      const at::Tensor tokens = at::randint(1, 50, {2, 15}, at::kLong);
      TransformerDecodeStates segments = model->NewSegmentStates(2);
      std::vector<at::Tensor> expected;
      for (int64_t start = 0; start < 15; start += 5) {
        expected.push_back(model->ForwardSegment(tokens.narrow(1, start, 5), segments));
      }
      const at::Tensor want = at::cat(expected, 1);
      const std::string what = absl::StrCat(memory_kind, xl_cache ? " with XL" : "");

      TransformerDecodeStates one_by_one = model->NewDecodeStates(2, /*segment_length=*/5);
      std::vector<at::Tensor> steps;
      for (int64_t t = 0; t < 15; ++t) {
        steps.push_back(model->DecodeStep(tokens.narrow(1, t, 1), {}, {}, one_by_one));
      }
      const at::Tensor got = at::cat(steps, 1);
      EXPECT_TRUE(at::allclose(got, want, 1e-7, 1e-8))
          << what << ": " << (got - want).abs().max().item<double>();

      TransformerDecodeStates chunked = model->NewDecodeStates(2, /*segment_length=*/5);
      const at::Tensor first = model->DecodeStep(tokens.narrow(1, 0, 7), {}, {}, chunked);
      const at::Tensor rest = model->DecodeStep(tokens.narrow(1, 7, 8), {}, {}, chunked);
      EXPECT_TRUE(at::allclose(at::cat({first, rest}, 1), want, 1e-7, 1e-8)) << what;
    }
  }
}

}  // namespace
}  // namespace memtrain::model
