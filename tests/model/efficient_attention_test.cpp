// Variant-specific tests of linformer, performer and memsizer and of the
// causal linear-attention kernel they share (ATTENTION.md §3(e), §4(e),
// §5(e)); the shared harness (attention_test.cpp) covers the rest.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/attention.h"
#include "model/linear_attention.h"
#include "model/performer_attention.h"
#include "tests/model/attention_references.h"

namespace memtrain::model {
namespace {

using testing::Call;
using ::testing::HasSubstr;
using testing::kHeads;
using testing::kWidth;
using testing::Random;

AttentionOptions Options(bool causal = false) {
  AttentionOptions options;
  options.layer = "test.layer";
  options.model_dim = kWidth;
  options.heads = kHeads;
  options.causal = causal;
  return options;
}

std::shared_ptr<AttentionImpl> Make(const std::string& kind, const AttentionOptions& options) {
  auto made = MakeAttention(kind, options);
  EXPECT_TRUE(made.ok()) << made.status();
  (*made)->to(at::kDouble);
  (*made)->eval();
  return *made;
}

// Copies every parameter `to` shares by name with `from`.
void CopySharedParameters(AttentionImpl& from, AttentionImpl& to) {
  at::NoGradGuard no_grad;
  const auto source = from.named_parameters();
  for (auto& item : to.named_parameters()) {
    if (const at::Tensor* match = source.find(item.key())) item.value().copy_(*match);
  }
}

// ---- the shared causal kernel --------------------------------------------------------

// out_i = sum_{j<=i} (q_i . k_j) exp(m_j - m_i) v_j, written out.
at::Tensor NaiveCausal(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       const at::Tensor& m) {
  const int64_t n = q.size(2);
  at::Tensor out = at::zeros({q.size(0), q.size(1), n, v.size(3)}, at::kDouble);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      at::Tensor weight = (q.select(2, i) * k.select(2, j)).sum(-1);  // [B, H]
      if (m.defined()) weight = weight * (m.select(2, j) - m.select(2, i)).exp();
      out.select(2, i) += weight.unsqueeze(-1) * v.select(2, j);
    }
  }
  return out;
}

TEST(LinearAttentionKernelTest, ChunkedCausalEqualsTheNaiveMaskedSum) {
  at::manual_seed(3);
  const int64_t n = 13;
  const at::Tensor q = Random({2, 3, n, 5}), k = Random({2, 3, n, 5}), v = Random({2, 3, n, 4});
  const at::Tensor m = Random({2, 3, n}).abs().cumsum(2);  // a running maximum never decreases
  for (const at::Tensor& scale : {at::Tensor(), m}) {
    const at::Tensor expected = NaiveCausal(q, k, v, scale);
    for (int64_t chunk : {1, 3, 4, 5, 13, 64}) {
      EXPECT_TRUE(
          at::allclose(CausalLinearAttention(q, k, v, scale, chunk), expected, 1e-10, 1e-12))
          << "chunk " << chunk << " scaled " << scale.defined();
      // The same positions fed in two calls through the prefix state (decoding).
      LinearPrefix prefix;
      auto part = [&](const at::Tensor& t, int64_t a, int64_t b) { return t.slice(2, a, b); };
      const at::Tensor first =
          CausalLinearAttention(part(q, 0, 6), part(k, 0, 6), part(v, 0, 6),
                                scale.defined() ? part(scale, 0, 6) : scale, chunk, &prefix);
      const at::Tensor rest =
          CausalLinearAttention(part(q, 6, n), part(k, 6, n), part(v, 6, n),
                                scale.defined() ? part(scale, 6, n) : scale, chunk, &prefix);
      EXPECT_TRUE(at::allclose(at::cat({first, rest}, 2), expected, 1e-10, 1e-12))
          << "chunk " << chunk;
    }
  }
}

// Under bf16 autocast (the trainer's --bf16; CPU autocast here, the same
// mechanism as CUDA's) a matmul would run in bf16. The linear kernels' prefix
// sums and summaries must stay float32 (model/attention.h): their float32
// results under autocast equal those without it exactly, while the same
// matmul left to autocast is visibly off.
TEST(LinearAttentionKernelTest, Bf16AutocastLeavesPrefixSumsAndSummariesInFloat32) {
  at::manual_seed(5);
  const int64_t n = 200;
  const at::Tensor q = at::randn({2, 2, n, 16}), k = at::randn({2, 2, n, 16}).exp(),
                   v = at::randn({2, 2, n, 8});
  const at::Tensor causal = CausalLinearAttention(q, k, v, /*log_scale=*/{}, 64);
  const at::Tensor summary = KeyValueSummary(k, v);
  at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCPU, true);
  const at::Tensor causal_autocast = CausalLinearAttention(q, k, v, /*log_scale=*/{}, 64);
  const at::Tensor summary_autocast = KeyValueSummary(k, v);
  const at::Tensor left_to_autocast = at::matmul(k.transpose(-2, -1), v);
  EXPECT_TRUE(at::autocast::is_autocast_enabled(at::kCPU))
      << "AutocastOff restores the caller's state";
  at::autocast::set_autocast_enabled(at::kCPU, false);
  at::autocast::clear_cache();

  EXPECT_EQ(causal_autocast.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(causal_autocast, causal));
  EXPECT_TRUE(at::equal(summary_autocast, summary));
  // The check above can fail: without AutocastOff the sums are bf16's.
  EXPECT_EQ(left_to_autocast.scalar_type(), at::kBFloat16);
  EXPECT_GT((left_to_autocast.to(at::kFloat) - summary).abs().max().item<float>(), 1e-3);
}

// ---- linformer -------------------------------------------------------------------

TEST(LinformerTest, IdentityProjectionWithKEqualsNIsSoftmaxAttention) {
  at::manual_seed(5);
  const int64_t n = 6;
  for (LinformerSharing sharing :
       {LinformerSharing::kNone, LinformerSharing::kHeadwise, LinformerSharing::kKeyValue}) {
    AttentionOptions options = Options();
    options.linformer.max_length = n;
    options.linformer.projected_length = n;
    options.linformer.sharing = sharing;
    auto linformer = Make("linformer", options);
    auto softmax = Make("softmax", options);
    CopySharedParameters(*softmax, *linformer);
    {
      at::NoGradGuard no_grad;
      for (auto& item : linformer->named_parameters()) {
        if (item.key().rfind("project_", 0) == 0)
          item.value().copy_(at::eye(n, at::kDouble).expand_as(item.value()));
      }
    }
    const at::Tensor x = Random({2, n, kWidth}), source = Random({2, n, kWidth});
    EXPECT_TRUE(at::allclose(linformer->forward(Call(x, false)), softmax->forward(Call(x, false)),
                             1e-12, 1e-12));
    EXPECT_TRUE(at::allclose(linformer->forward(Call(x, false, source)),
                             softmax->forward(Call(x, false, source)), 1e-12, 1e-12));
  }
}

TEST(LinformerTest, CausalIsRefusedNamingTheLayer) {
  AttentionOptions options = Options(/*causal=*/true);
  options.layer = "decoder.4.self";
  auto made = MakeAttention("linformer", options);
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(made.status().message()), HasSubstr("decoder.4.self"));
  EXPECT_THAT(std::string(made.status().message()), HasSubstr("causal"));
}

TEST(LinformerTest, SharingDecidesTheProjectionsAndLongInputsAreRefused) {
  auto count = [](LinformerSharing sharing) {
    AttentionOptions options = Options();
    options.linformer.sharing = sharing;
    options.linformer.max_length = 8;
    options.linformer.projected_length = 3;
    auto attention = Make("linformer", options);
    int64_t matrices = 0;
    for (const auto& item : attention->named_parameters()) {
      if (item.key().rfind("project_", 0) == 0) matrices += item.value().size(0);
    }
    return matrices;
  };
  EXPECT_EQ(count(LinformerSharing::kNone), 2 * kHeads);
  EXPECT_EQ(count(LinformerSharing::kHeadwise), 2);
  EXPECT_EQ(count(LinformerSharing::kKeyValue), 1);
  {
    AttentionOptions options = Options();
    options.layer = "encoder.2.self";
    options.linformer.sharing = LinformerSharing::kLayerwise;
    auto made = MakeAttention("linformer", options);
    ASSERT_FALSE(made.ok());
    EXPECT_THAT(std::string(made.status().message()), HasSubstr("encoder.2.self"));
    EXPECT_THAT(std::string(made.status().message()), HasSubstr("shared projection"));
  }

  AttentionOptions options = Options();
  options.layer = "encoder.0.self";
  options.linformer.max_length = 8;
  auto attention = Make("linformer", options);
  try {
    attention->forward(Call(Random({1, 9, kWidth}), false));
    ADD_FAILURE() << "9 keys were accepted with max_length 8";
  } catch (const c10::Error& error) {
    EXPECT_THAT(error.what_without_backtrace(), HasSubstr("encoder.0.self"));
    EXPECT_THAT(error.what_without_backtrace(), HasSubstr("max_length"));
  }
}

// ---- performer -------------------------------------------------------------------

std::shared_ptr<PerformerAttentionImpl> MakePerformer(AttentionOptions options) {
  return std::dynamic_pointer_cast<PerformerAttentionImpl>(Make("performer", options));
}

TEST(PerformerTest, MatchesTheExplicitFeatureFormula) {
  at::manual_seed(7);
  const at::Tensor x = Random({2, 5, kWidth}), source = Random({2, 7, kWidth});
  const at::Tensor padding = at::zeros({2, 7}, at::kBool);
  padding[0].slice(0, 4) = true;
  for (PerformerKernel kernel : {PerformerKernel::kSoftmax, PerformerKernel::kRelu}) {
    AttentionOptions options = Options();
    options.performer.features = 24;
    options.performer.kernel = kernel;
    options.performer.chunk = 2;
    auto performer = MakePerformer(options);
    for (const AttentionCall& call :
         {Call(x, false), Call(x, true), Call(x, false, source, padding),
          Call(source, true, {}, padding)}) {
      EXPECT_TRUE(at::allclose(performer->forward(call),
                               testing::PerformerReference(*performer, call), 1e-9, 1e-10))
          << "relu " << (kernel == PerformerKernel::kRelu) << " causal " << call.causal;
    }
  }
}

TEST(PerformerTest, ApproximationErrorShrinksWithMoreFeatures) {
  at::manual_seed(11);
  const at::Tensor x = 0.5 * Random({2, 12, kWidth});
  AttentionOptions options = Options();
  auto softmax = Make("softmax", options);
  const at::Tensor exact = softmax->forward(Call(x, false));
  std::vector<double> errors;
  for (int64_t features : {16, 256, 1024}) {
    double total = 0;
    for (uint64_t seed = 0; seed < 6; ++seed) {
      options.performer.features = features;
      options.performer.seed = seed;
      auto performer = MakePerformer(options);
      CopySharedParameters(*softmax, *performer);
      total += (performer->forward(Call(x, false)) - exact).abs().mean().item<double>();
    }
    errors.push_back(total / 6);
  }
  EXPECT_GT(errors[0], 1.5 * errors[1]) << errors[0] << " vs " << errors[1];
  EXPECT_GT(errors[1], 1.5 * errors[2]) << errors[1] << " vs " << errors[2];
}

TEST(PerformerTest, ALaterDominantKeyDoesNotChangeEarlierOutputs) {
  // A feature exponent w.x - |x|^2/2 is largest for x near a row of W, and far
  // below zero for long x. Long early keys and a zero later key: a stabilizer
  // shared with the later key (the references' global max) underflows every
  // earlier key's feature; the running max does not.
  at::manual_seed(13);
  for (int64_t chunk : {64, 3}) {
    AttentionOptions options = Options(/*causal=*/true);
    options.performer.features = 32;
    options.performer.chunk = chunk;
    auto performer = MakePerformer(options);
    {
      at::NoGradGuard no_grad;
      for (const char* name : {"query", "key"}) {
        for (auto& item : performer->named_parameters()) {
          if (item.key() == std::string(name) + ".weight")
            item.value().copy_(at::eye(kWidth, at::kDouble));
          if (item.key() == std::string(name) + ".bias") item.value().zero_();
        }
      }
    }
    const at::Tensor early = 40 * Random({2, 6, kWidth});
    const at::Tensor x = at::cat({early, at::zeros({2, 2, kWidth}, at::kDouble)}, 1);
    const at::Tensor alone = performer->forward(Call(early, true));
    const at::Tensor with_later = performer->forward(Call(x, true));
    EXPECT_TRUE(at::isfinite(with_later).all().item<bool>());
    EXPECT_TRUE(at::allclose(with_later.slice(1, 0, 6), alone, 1e-12, 1e-12)) << "chunk " << chunk;
    // And the earlier outputs are the formula's, not a degenerate zero.
    EXPECT_TRUE(at::allclose(alone, testing::PerformerReference(*performer, Call(early, true)),
                             1e-8, 1e-10));
  }
}

TEST(PerformerTest, RedrawChangesTheProjectionEveryIntervalInTrainingOnly) {
  AttentionOptions options = Options();
  options.performer.features = 8;
  options.performer.redraw_interval = 3;
  auto performer = MakePerformer(options);
  auto twin = MakePerformer(options);
  const at::Tensor x = Random({1, 4, kWidth});
  const at::Tensor initial = performer->projection().clone();
  EXPECT_TRUE(at::equal(initial, twin->projection()))
      << "same seed and layer, same projection on every rank";
  EXPECT_NE(performer->named_buffers().find("projection"), nullptr)
      << "the projection must checkpoint";
  for (int i = 0; i < 5; ++i) performer->forward(Call(x, false));  // eval: never
  EXPECT_TRUE(at::equal(performer->projection(), initial));
  performer->train();
  for (int i = 0; i < 3; ++i) performer->forward(Call(x, false));
  EXPECT_TRUE(at::equal(performer->projection(), initial)) << "redrawn before the interval";
  performer->forward(Call(x, false));
  EXPECT_FALSE(at::equal(performer->projection(), initial)) << "not redrawn after the interval";
  EXPECT_EQ(performer->redraws(), 1);
  twin->RedrawProjection();
  EXPECT_TRUE(at::equal(performer->projection(), twin->projection()));
}

TEST(PerformerTest, OrthogonalBlocksAndScaling) {
  const at::Tensor w = DrawPerformerProjection(10, 4, /*orthogonal=*/true, /*ortho_scaling=*/1, 3);
  EXPECT_TRUE(at::allclose(w.norm(2, {1}), at::full({10}, 2.0, at::kDouble), 1e-12, 1e-12));
  const at::Tensor block = w.slice(0, 0, 4);
  EXPECT_TRUE(
      at::allclose(at::matmul(block, block.t()), 4 * at::eye(4, at::kDouble), 1e-10, 1e-10));
}

// ---- memsizer --------------------------------------------------------------------

TEST(MemSizerTest, CrossAttentionMemoryIsBuiltOnceAndCached) {
  at::manual_seed(17);
  AttentionOptions options = Options();
  options.cross = true;
  options.memsizer.slots = 6;
  auto memsizer = Make("memsizer", options);
  const at::Tensor x = Random({2, 3, kWidth}), source = Random({2, 9, kWidth});
  const at::Tensor full = memsizer->forward(Call(x, false, source));
  auto state = memsizer->NewState(2);
  std::vector<at::Tensor> pieces;
  for (int64_t t = 0; t < 3; ++t) {
    // Later steps pass a different source: the cached memory must be used.
    const at::Tensor step_source = t == 0 ? source : Random({2, 9, kWidth});
    pieces.push_back(
        memsizer->forward(Call(x.slice(1, t, t + 1), false, step_source, {}, state.get())));
  }
  EXPECT_TRUE(at::allclose(at::cat(pieces, 1), full, 1e-12, 1e-12));
  int64_t held = 0;
  for (const at::Tensor& t : state->Tensors()) held += t.defined() ? t.numel() : 0;
  EXPECT_EQ(held, 2 * 6 * kWidth) << "the state holds the [B, k, D] memory, independent of s";
}

TEST(MemSizerTest, AddressingIsAProbabilityAverageAndCausalOutputsAreScaledPrefixSums) {
  at::manual_seed(19);
  AttentionOptions options = Options(/*causal=*/true);
  options.memsizer.slots = 5;
  options.memsizer.chunk = 3;
  auto memsizer = Make("memsizer", options);
  const at::Tensor x = Random({2, 11, kWidth});
  const AttentionCall call = Call(x, true);
  EXPECT_TRUE(at::allclose(memsizer->forward(call), testing::MemSizerReference(*memsizer, call),
                           1e-10, 1e-12));
}

}  // namespace
}  // namespace memtrain::model
