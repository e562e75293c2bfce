// One harness for every registered attention kind (model/attention_registry.cpp):
// a new variant gets all of these checks by registering, and must add an fp64
// reference of its formula to References() below. Everything runs in float64.
#include "model/attention.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>

#include "tests/model/attention_references.h"

namespace memtrain::model {
namespace {

using ::testing::HasSubstr;

using testing::Call;
using testing::InfiniteReference;
using testing::kHeads;
using testing::KnnReference;
using testing::kWidth;
using testing::LinformerReference;
using testing::MemSizerReference;
using testing::Param;
using testing::PerformerReference;
using testing::Random;
using testing::Reference;
using testing::SoftmaxReference;

std::shared_ptr<AttentionImpl> Make(const std::string& kind, bool causal, bool cross = false) {
  AttentionOptions options;
  options.layer = "test." + kind;
  options.model_dim = kWidth;
  options.heads = kHeads;
  options.causal = causal;
  options.cross = cross;
  auto made = MakeAttention(kind, options);
  EXPECT_TRUE(made.ok()) << made.status();
  (*made)->to(at::kDouble);
  (*made)->eval();
  return *made;
}

// One line per kind; the reference itself lives in tests/model/<kind>_reference.cpp.
const std::map<std::string, Reference>& References() {
  static const auto* references = new std::map<std::string, Reference>{
      {"softmax", SoftmaxReference},
      {"linformer", LinformerReference},
      {"performer", PerformerReference},
      {"memsizer", MemSizerReference},
      {"knn", KnnReference},
      {"infinite", InfiniteReference},
  };
  return *references;
}

// ---- the harness -------------------------------------------------------------------

class AttentionConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { at::manual_seed(1234); }
  AttentionCapabilities caps() { return Make(GetParam(), false)->capabilities(); }
};

TEST_P(AttentionConformanceTest, OutputShapes) {
  const at::Tensor x = Random({2, 7, kWidth});
  if (caps().non_causal) {
    EXPECT_EQ(Make(GetParam(), false)->forward(Call(x, false)).sizes(), x.sizes());
  }
  if (caps().causal) {
    EXPECT_EQ(Make(GetParam(), true)->forward(Call(x, true)).sizes(), x.sizes());
  }
  if (caps().cross) {
    const at::Tensor source = Random({2, 11, kWidth});
    EXPECT_EQ(Make(GetParam(), false, true)->forward(Call(x, false, source)).sizes(), x.sizes());
  }
}

TEST_P(AttentionConformanceTest, CausalOutputsIgnoreTheFuture) {
  if (!caps().causal) GTEST_SKIP() << GetParam() << " has no causal form";
  auto attention = Make(GetParam(), true);
  const at::Tensor x = Random({2, 9, kWidth});
  const at::Tensor changed = x.clone();
  changed.slice(1, 5) += Random({2, 4, kWidth});
  const at::Tensor a = attention->forward(Call(x, true));
  const at::Tensor b = attention->forward(Call(changed, true));
  EXPECT_TRUE(at::allclose(a.slice(1, 0, 5), b.slice(1, 0, 5), 1e-12, 1e-12));
  EXPECT_FALSE(at::allclose(a.slice(1, 5), b.slice(1, 5))) << "the future changed nothing at all";
}

TEST_P(AttentionConformanceTest, IncrementalDecodingEqualsTheFullCausalForward) {
  if (!caps().causal || !caps().decode) GTEST_SKIP() << GetParam() << " does not decode";
  auto attention = Make(GetParam(), true);
  const at::Tensor x = Random({3, 10, kWidth});
  const at::Tensor full = attention->forward(Call(x, true));
  auto state = attention->NewState(3);
  std::vector<at::Tensor> pieces;
  int64_t start = 0;
  for (int64_t length : {1, 3, 1, 5}) {
    pieces.push_back(
        attention->forward(Call(x.slice(1, start, start + length), true, {}, {}, state.get())));
    start += length;
  }
  EXPECT_EQ(state->position(), 10);
  EXPECT_TRUE(at::allclose(at::cat(pieces, 1), full, 1e-9, 1e-10));

  // Beam reorder: continue rows (2, 0) after 4 tokens.
  auto reordered = attention->NewState(3);
  attention->forward(Call(x.slice(1, 0, 4), true, {}, {}, reordered.get()));
  const at::Tensor rows = at::tensor({2, 0}, at::kLong);
  reordered->Reorder(rows);
  const at::Tensor rest =
      attention->forward(Call(x.index_select(0, rows).slice(1, 4), true, {}, {}, reordered.get()));
  EXPECT_TRUE(at::allclose(rest, full.index_select(0, rows).slice(1, 4), 1e-9, 1e-10));
}

TEST_P(AttentionConformanceTest, CrossAttentionDecodingEqualsTheFullCall) {
  if (!caps().cross || !caps().decode) GTEST_SKIP() << GetParam() << " has no cross decoding";
  auto attention = Make(GetParam(), false, true);
  const at::Tensor x = Random({2, 6, kWidth}), source = Random({2, 8, kWidth});
  const at::Tensor padding = at::zeros({2, 8}, at::kBool);
  padding[1].slice(0, 5) = true;
  const at::Tensor full = attention->forward(Call(x, false, source, padding));
  auto state = attention->NewState(2);
  std::vector<at::Tensor> pieces;
  for (int64_t t = 0; t < 6; ++t) {
    pieces.push_back(
        attention->forward(Call(x.slice(1, t, t + 1), false, source, padding, state.get())));
  }
  EXPECT_TRUE(at::allclose(at::cat(pieces, 1), full, 1e-9, 1e-10));
}

TEST_P(AttentionConformanceTest, PaddedKeysChangeNothing) {
  for (bool causal : {false, true}) {
    if ((causal && !caps().causal) || (!causal && !caps().non_causal)) continue;
    auto attention = Make(GetParam(), causal);
    const at::Tensor x = Random({2, 6, kWidth});
    const at::Tensor padded = at::cat({x, Random({2, 3, kWidth})}, 1);  // junk in the pads
    const at::Tensor padding = at::zeros({2, 9}, at::kBool);
    padding.slice(1, 6) = true;
    const at::Tensor a = attention->forward(Call(x, causal));
    const at::Tensor b = attention->forward(Call(padded, causal, {}, padding));
    EXPECT_TRUE(at::allclose(a, b.slice(1, 0, 6), 1e-9, 1e-10)) << "causal " << causal;
  }
}

TEST_P(AttentionConformanceTest, MatchesTheFp64Reference) {
  auto reference = References().find(GetParam());
  ASSERT_NE(reference, References().end())
      << "register an fp64 reference for '" << GetParam() << "' in References()";
  if (!caps().exact) GTEST_SKIP() << GetParam() << " is randomized; its reference test is its own";
  const at::Tensor x = Random({2, 5, kWidth}), source = Random({2, 7, kWidth});
  const at::Tensor padding = at::zeros({2, 7}, at::kBool);
  padding[0].slice(0, 4) = true;
  struct Case {
    bool causal, cross;
  };
  for (Case c : {Case{false, false}, Case{true, false}, Case{false, true}}) {
    if ((c.causal && !caps().causal) || (c.cross && !caps().cross) ||
        (!c.causal && !c.cross && !caps().non_causal)) {
      continue;
    }
    auto attention = Make(GetParam(), c.causal, c.cross);
    const AttentionCall call = c.cross ? Call(x, false, source, padding) : Call(x, c.causal);
    EXPECT_TRUE(
        at::allclose(attention->forward(call), reference->second(*attention, call), 1e-9, 1e-10))
        << "causal " << c.causal << " cross " << c.cross;
  }
}

TEST_P(AttentionConformanceTest, GradientsMatchFiniteDifferences) {
  const bool causal = caps().causal;
  auto attention = Make(GetParam(), causal);
  const at::Tensor x = Random({1, 4, kWidth}).requires_grad_(true);
  const at::Tensor weights = Random({1, 4, kWidth});
  auto loss = [&](const at::Tensor& input) {
    return (attention->forward(Call(input, causal)) * weights).sum();
  };
  loss(x).backward();
  const at::Tensor parameter = attention->parameters().front();
  const at::Tensor analytic_x = x.grad().clone(), analytic_p = parameter.grad().clone();
  at::NoGradGuard no_grad;
  // Central differences of the loss in coordinate i of `tensor`.
  auto check = [&](const at::Tensor& tensor, const at::Tensor& analytic,
                   std::initializer_list<int64_t> coordinates, const char* what) {
    constexpr double kEps = 1e-6;
    const at::Tensor flat = tensor.detach().view(-1);
    for (int64_t i : coordinates) {
      const double saved = flat[i].item<double>();
      flat[i] = saved + kEps;
      const double up = loss(x.detach()).item<double>();
      flat[i] = saved - kEps;
      const double down = loss(x.detach()).item<double>();
      flat[i] = saved;
      EXPECT_NEAR(analytic.view(-1)[i].item<double>(), (up - down) / (2 * kEps), 1e-6)
          << what << " " << i;
    }
  };
  check(x, analytic_x, {0, 5, 17, 33, 60}, "input");
  check(parameter, analytic_p, {0, 7, 42}, "parameter");
}

TEST_P(AttentionConformanceTest, AllPaddingRowGivesZerosAndFiniteGradients) {
  if (!caps().non_causal) GTEST_SKIP() << GetParam() << " has no non-causal form";
  auto attention = Make(GetParam(), false);
  const at::Tensor x = Random({2, 4, kWidth}).requires_grad_(true);
  const at::Tensor padding = at::zeros({2, 4}, at::kBool);
  padding[1] = true;
  const at::Tensor out = attention->forward(Call(x, false, {}, padding));
  // The output projection's bias is all a row without keys can show (zeros
  // for a kind without an output projection, e.g. memsizer).
  const auto parameters = attention->named_parameters();
  const at::Tensor* output_bias = parameters.find("output.bias");
  const at::Tensor bias = output_bias != nullptr ? *output_bias : at::zeros({kWidth}, at::kDouble);
  EXPECT_TRUE(at::allclose(out[1], bias.expand({4, kWidth}), 1e-12, 1e-12));
  out.sum().backward();
  EXPECT_TRUE(at::isfinite(x.grad()).all().item<bool>());
}

TEST_P(AttentionConformanceTest, ConstantStateDoesNotGrowWithPosition) {
  if (!caps().constant_state) GTEST_SKIP() << GetParam() << " keeps a growing cache by design";
  auto attention = Make(GetParam(), true);
  auto state = attention->NewState(1);
  auto numel = [&] {
    int64_t total = 0;
    for (const at::Tensor& t : state->Tensors()) total += t.defined() ? t.numel() : 0;
    return total;
  };
  attention->forward(Call(Random({1, 5, kWidth}), true, {}, {}, state.get()));
  const int64_t after_5 = numel();
  attention->forward(Call(Random({1, 45, kWidth}), true, {}, {}, state.get()));
  EXPECT_EQ(numel(), after_5);
}

INSTANTIATE_TEST_SUITE_P(Kinds, AttentionConformanceTest, ::testing::ValuesIn(AttentionKinds()),
                         [](const auto& info) { return info.param; });

TEST(AttentionRegistryTest, UnknownKindListsTheKnownOnes) {
  AttentionOptions options;
  options.layer = "decoder.2.self";
  auto made = MakeAttention("sparse", options);
  EXPECT_EQ(made.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(made.status().message()), HasSubstr("decoder.2.self"));
  EXPECT_THAT(std::string(made.status().message()), HasSubstr("softmax"));
}

TEST(AttentionRegistryTest, BadWidthIsRefusedNamingTheLayer) {
  AttentionOptions options;
  options.layer = "encoder.1.self";
  options.model_dim = 10;
  options.heads = 4;
  auto made = MakeAttention("softmax", options);
  EXPECT_EQ(made.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(made.status().message()), HasSubstr("encoder.1.self"));
}

}  // namespace
}  // namespace memtrain::model
