// Greedy and beam search against brute force: greedy equals the argmax chain
// computed by full forwards (no decode state), and a beam as wide as the
// whole search space finds the exact best sequence.
#include "trainer/search.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

namespace memtrain::trainer {
namespace {

constexpr int64_t kVocab = 5, kEos = 3;

model::Transformer TinyLm(const std::string& attention) {
  at::manual_seed(11);
  model::TransformerOptions o;
  o.vocab_size = kVocab;
  o.model_dim = 8;
  o.heads = 2;
  o.ffn_dim = 16;
  o.encoder_layers = 0;
  o.decoder_layers = 2;
  o.attention = attention;
  auto model = model::MakeTransformer(o);
  EXPECT_TRUE(model.ok());
  (*model)->to(at::kDouble);
  (*model)->eval();
  // Sharper distributions than at initialisation, so the search matters.
  at::NoGradGuard no_grad;
  for (at::Tensor& p : (*model)->parameters()) p.mul_(3.0);
  return *model;
}

double LogProb(model::TransformerImpl& model, const std::vector<int64_t>& prefix, int64_t token) {
  const at::Tensor logits = model.ForwardLm(at::tensor(prefix, at::kLong).view({1, -1}));
  return logits[0][-1].log_softmax(-1)[token].item<double>();
}

TEST(SearchTest, GreedyEqualsTheArgmaxChainOfFullForwards) {
  for (const char* attention : {"softmax", "performer", "memsizer"}) {
    model::Transformer model = TinyLm(attention);
    SearchOptions options;
    options.beam = 1;
    options.max_length = 6;
    options.eos = kEos;
    const std::vector<Hypothesis> found =
        BeamSearch(*model, {}, at::tensor({2, 4}, at::kLong).view({1, 2}), options);
    std::vector<int64_t> prefix = {2, 4}, expected;
    for (int step = 0; step < 6; ++step) {
      const at::Tensor logits = model->ForwardLm(at::tensor(prefix, at::kLong).view({1, -1}));
      const int64_t next = logits[0][-1].argmax().item<int64_t>();
      if (next == kEos) break;
      expected.push_back(next);
      prefix.push_back(next);
    }
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].tokens, expected) << attention;
  }
}

TEST(SearchTest, AFullWidthBeamFindsTheBestSequence) {
  model::Transformer model = TinyLm("softmax");
  const int64_t max_length = 3;
  const double penalty = 1.0;
  // Brute force over every continuation of up to 3 tokens (ending in eos or cut at 3).
  double best = -INFINITY;
  std::vector<int64_t> best_tokens;
  std::function<void(std::vector<int64_t>, double)> expand = [&](std::vector<int64_t> tokens,
                                                                 double score) {
    std::vector<int64_t> prefix = {2};
    prefix.insert(prefix.end(), tokens.begin(), tokens.end());
    for (int64_t token = 0; token < kVocab; ++token) {
      const double next = score + LogProb(*model, prefix, token);
      if (token == kEos) {
        const double ranked = next / std::pow(static_cast<double>(tokens.size() + 1), penalty);
        if (ranked > best) best = ranked, best_tokens = tokens;
        continue;
      }
      std::vector<int64_t> longer = tokens;
      longer.push_back(token);
      if (static_cast<int64_t>(longer.size()) == max_length) {
        const double ranked = next / std::pow(static_cast<double>(max_length), penalty);
        if (ranked > best) best = ranked, best_tokens = longer;
      } else {
        expand(longer, next);
      }
    }
  };
  expand({}, 0.0);
  SearchOptions options;
  options.beam = kVocab * kVocab * kVocab;
  options.max_length = max_length;
  options.length_penalty = penalty;
  options.eos = kEos;
  const std::vector<Hypothesis> found =
      BeamSearch(*model, {}, at::tensor({2}, at::kLong).view({1, 1}), options);
  EXPECT_EQ(found[0].tokens, best_tokens);
  EXPECT_NEAR(found[0].score / std::pow(static_cast<double>(found[0].tokens.size() +
                                                            (found[0].finished ? 1 : 0)),
                                        penalty),
              best, 1e-9);
}

}  // namespace
}  // namespace memtrain::trainer
