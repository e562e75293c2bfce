// Greedy and beam search against brute force: greedy equals the argmax chain
// computed by full forwards (no decode state), and a beam as wide as the
// whole search space finds the exact best sequence. Sampling: top_k=1 is
// greedy, a seed fixes a row's draws whatever rows share its batch, and the
// top-k / nucleus cut keeps exactly the tokens it should. Generate (batches
// by length, order restored) gives each input what it gets alone.
#include "trainer/search.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "trainer/generation.h"

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

SearchOptions SamplingOptions(int64_t max_length) {
  SearchOptions options;
  options.max_length = max_length;
  options.eos = kEos;
  options.temperature = 1.0;
  return options;
}

TEST(SearchTest, SamplingFromTheTopTokenOnlyIsGreedy) {
  model::Transformer model = TinyLm("softmax");
  SearchOptions greedy = SamplingOptions(6);
  greedy.beam = 1;
  const at::Tensor prompt = at::tensor({2, 4}, at::kLong).view({1, 2});
  const std::vector<Hypothesis> best = BeamSearch(*model, {}, prompt, greedy);
  SearchOptions top1 = SamplingOptions(6);
  top1.top_k = 1;
  for (uint64_t seed : {1, 2, 3}) {
    EXPECT_EQ(Sample(*model, {}, prompt, top1, {seed})[0].tokens, best[0].tokens) << seed;
  }
}

TEST(SearchTest, ASeedFixesARowsDrawsWhateverItsBatch) {
  model::Transformer model = TinyLm("softmax");
  const SearchOptions options = SamplingOptions(8);
  const at::Tensor one = at::tensor({2, 4}, at::kLong).view({1, 2});
  const at::Tensor three = at::tensor({2, 4, 2, 4, 2, 4}, at::kLong).view({3, 2});
  const std::vector<Hypothesis> alone = Sample(*model, {}, one, options, {7});
  const std::vector<Hypothesis> batched = Sample(*model, {}, three, options, {5, 7, 9});
  EXPECT_EQ(batched[1].tokens, alone[0].tokens);
  EXPECT_DOUBLE_EQ(batched[1].score, alone[0].score);
  EXPECT_EQ(Sample(*model, {}, one, options, {7})[0].tokens, alone[0].tokens);
  // Other seeds draw other sequences (8 tokens of a 5-token vocabulary at
  // temperature 1: some of 8 seeds must differ from seed 7's).
  int differ = 0;
  for (uint64_t seed = 100; seed < 108; ++seed) {
    differ += Sample(*model, {}, one, options, {seed})[0].tokens != alone[0].tokens;
  }
  EXPECT_GT(differ, 0);
}

TEST(SearchTest, TopKAndNucleusKeepExactlyTheirTokens) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 (token 2, 0, 3, 1).
  const at::Tensor logits = at::tensor({0.3, 0.05, 0.5, 0.15}, at::kDouble).log().view({1, 4});
  SearchOptions options = SamplingOptions(1);
  at::Tensor p = SamplingDistribution(logits, options);
  EXPECT_TRUE(at::allclose(p, at::tensor({0.3, 0.05, 0.5, 0.15}, at::kDouble).view({1, 4})));
  options.top_p = 0.7;  // 0.5 < 0.7, 0.5 + 0.3 reaches it: tokens 2 and 0
  p = SamplingDistribution(logits, options);
  EXPECT_TRUE(at::allclose(p, at::tensor({0.375, 0.0, 0.625, 0.0}, at::kDouble).view({1, 4}))) << p;
  options.top_p = 1.0;
  options.top_k = 3;
  p = SamplingDistribution(logits, options);
  EXPECT_TRUE(at::allclose(p, at::tensor({0.3, 0.0, 0.5, 0.15}, at::kDouble).view({1, 4}) / 0.95))
      << p;
  options.top_k = 0;
  options.temperature = 0.5;  // p^2, renormalised
  p = SamplingDistribution(logits, options);
  const at::Tensor squared = at::tensor({0.09, 0.0025, 0.25, 0.0225}, at::kDouble);
  EXPECT_TRUE(at::allclose(p, (squared / squared.sum()).view({1, 4}))) << p;
}

model::Transformer TinySeq2seq() {
  at::manual_seed(12);
  model::TransformerOptions o;
  o.vocab_size = kVocab;
  o.model_dim = 8;
  o.heads = 2;
  o.ffn_dim = 16;
  o.encoder_layers = 1;
  o.decoder_layers = 1;
  auto model = model::MakeTransformer(o);
  EXPECT_TRUE(model.ok());
  (*model)->to(at::kDouble);
  at::NoGradGuard no_grad;
  for (at::Tensor& p : (*model)->parameters()) p.mul_(3.0);
  return *model;
}

at::Tensor Row(const std::vector<int32_t>& ids) {
  return at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).view({1, -1});
}

TEST(GenerateTest, BatchedByLengthEachInputGetsWhatItGetsAlone) {
  GenerationOptions options;
  options.search.beam = 2;
  options.search.max_length = 5;
  options.search.eos = kEos;
  options.batch_rows = 3;
  // seq2seq: sources of several lengths, padded in their batches.
  model::Transformer seq2seq = TinySeq2seq();
  std::vector<GenerationInput> inputs;
  for (const std::vector<int32_t>& source :
       {std::vector<int32_t>{4, 3}, {1, 4, 2, 4, 3}, {2, 2, 3}, {4, 1, 4, 3}, {3}, {1, 1, 2, 3}}) {
    inputs.push_back({source, {2}});
  }
  auto batched = Generate(*seq2seq, inputs, 0, options, at::kCPU);
  ASSERT_TRUE(batched.ok()) << batched.status();
  int distinct = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Hypothesis alone =
        BeamSearch(*seq2seq, Row(inputs[i].source), Row(inputs[i].prompt), options.search)[0];
    EXPECT_EQ((*batched)[i].tokens, alone.tokens) << "input " << i;
    distinct += i > 0 && (*batched)[i].tokens != (*batched)[0].tokens;
  }
  EXPECT_GT(distinct, 0) << "the inputs must be told apart for the order to be checked";
  // lm: prompts of several lengths (a batch holds one length); sampling draws
  // input i from seed + i.
  model::Transformer lm = TinyLm("softmax");
  inputs.clear();
  for (const std::vector<int32_t>& prompt :
       {std::vector<int32_t>{2, 4}, {2}, {4, 1, 2}, {2, 1}, {4}}) {
    inputs.push_back({{}, prompt});
  }
  options.sample = true;
  options.seed = 40;
  batched = Generate(*lm, inputs, 0, options, at::kCPU);
  ASSERT_TRUE(batched.ok()) << batched.status();
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Hypothesis alone = Sample(*lm, {}, Row(inputs[i].prompt), options.search, {40 + i})[0];
    EXPECT_EQ((*batched)[i].tokens, alone.tokens) << "input " << i;
  }
  inputs.push_back({{}, {}});
  EXPECT_THAT(std::string(Generate(*lm, inputs, 0, options, at::kCPU).status().message()),
              ::testing::HasSubstr("input 6 has an empty prompt"));
}

}  // namespace
}  // namespace memtrain::trainer
