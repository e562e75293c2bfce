// The lm task's loss with memory: the memory layers' regularisers (the
// ∞-former's KL term) are added to the token loss only when enabled, and
// never to the perplexity totals. And seq2seq tasks on a decoder-only model
// (a prefix LM): the loss counts the target's tokens, the source is context.
#include "trainer/task.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "data/corpus_file.h"
#include "model/transformer.h"
#include "trainer/generation.h"
#include "trainer/loss.h"
#include "trainer/search.h"

namespace memtrain::trainer {
namespace {

// A small decoder-only model of two `attention` layers, in double, in eval
// mode (no dropout: two such models compute the same logits).
model::Transformer SmallLm(const std::string& attention = "softmax",
                           const model::AttentionOptions& attention_options = {}) {
  model::TransformerOptions o;
  o.vocab_size = 50;
  o.model_dim = 16;
  o.heads = 4;
  o.ffn_dim = 32;
  o.encoder_layers = 0;
  o.decoder_layers = 2;
  o.attention = attention;
  o.attention_options = attention_options;
  at::manual_seed(7);
  auto model = model::MakeTransformer(o);
  EXPECT_TRUE(model.ok()) << model.status();
  (*model)->to(at::kDouble);
  (*model)->eval();
  return *model;
}

// Two infinite layers; the same parameters whatever `kl_weight` is.
model::Transformer InfiniteLm(double kl_weight) {
  model::AttentionOptions options;
  options.infinite.basis = 8;
  options.infinite.samples = 8;
  options.infinite.widths = {0.1, 0.2};
  options.infinite.kl_weight = kl_weight;
  return SmallLm("infinite", options);
}

data::Batch Segment(int64_t step) {
  at::manual_seed(100 + step);
  data::Batch batch;
  batch.inputs = at::randint(1, 50, {2, 6}, at::kLong);
  batch.targets = at::randint(1, 50, {2, 6}, at::kLong);
  batch.loss_mask = at::ones({2, 6}, at::kBool);
  batch.new_document = at::full({2}, step == 0, at::kBool);
  return batch;
}

TEST(LmTaskTest, TheKlTermReachesTheLossOnlyWhenEnabled) {
  const double weight = 0.5;
  model::Transformer on = InfiniteLm(weight), off = InfiniteLm(0.0);
  auto with_kl = MakeTask("lm", {});
  auto without = MakeTask("lm", {});
  ASSERT_TRUE(with_kl.ok() && without.ok());
  // The same segments through the model directly, for the states' term.
  model::TransformerDecodeStates states = on->NewSegmentStates(2);
  for (int64_t step = 0; step < 3; ++step) {
    const data::Batch batch = Segment(step);
    const TokenLoss a = (*with_kl)->Forward(*on, batch);
    const TokenLoss b = (*without)->Forward(*off, batch);
    on->StartDocuments(states, batch.new_document);
    on->ForwardSegment(batch.inputs, states);
    const at::Tensor term = states.AuxiliaryLoss();
    EXPECT_EQ(a.totals.nll_sum, b.totals.nll_sum) << "the weight changes nothing else";
    if (step == 0) {
      EXPECT_FALSE(term.defined()) << "nothing in memory, nothing read";
      EXPECT_EQ(a.smoothed.item<double>(), b.smoothed.item<double>());
      continue;
    }
    ASSERT_TRUE(term.defined());
    EXPECT_GT(term.item<double>(), 0);
    EXPECT_NEAR(a.smoothed.item<double>() - b.smoothed.item<double>(), term.item<double>(),
                1e-9 * term.item<double>());
  }
}

// A prefix-LM row as data/batch_source.h makes it: source 11 12 13, <sep>,
// target 21 22 and eos; the loss on the targets 21 22 eos only.
data::Batch PrefixLmRow(int64_t first_source_token) {
  const std::vector<int64_t> sequence = {first_source_token, 12, 13, 4, 21, 22, 3};
  data::Batch batch;
  batch.inputs =
      at::tensor(std::vector<int64_t>(sequence.begin(), sequence.end() - 1)).view({1, -1});
  batch.targets =
      at::tensor(std::vector<int64_t>(sequence.begin() + 1, sequence.end())).view({1, -1});
  batch.loss_mask = at::tensor(std::vector<int64_t>{0, 0, 0, 1, 1, 1}).to(at::kBool).view({1, -1});
  return batch;
}

TEST(Seq2SeqTaskTest, ADecoderOnlyModelScoresTheTargetWithTheSourceAsContext) {
  model::Transformer model = SmallLm();
  auto task = MakeTask("qa", {});
  ASSERT_TRUE(task.ok());
  ASSERT_TRUE((*task)->CheckModel(model->options()).ok());

  std::vector<double> nll;
  for (int64_t first : {11, 17}) {
    const data::Batch batch = PrefixLmRow(first);
    const TokenLoss loss = (*task)->Forward(*model, batch);
    EXPECT_EQ(loss.totals.tokens, 3) << "target and eos, not the source or <sep>";
    // By hand: -log p of 21, 22, eos after the prefix.
    const at::Tensor log_p = model->ForwardLm(batch.inputs).log_softmax(-1)[0];
    const double expected = -(log_p[3][21] + log_p[4][22] + log_p[5][3]).item<double>();
    EXPECT_NEAR(loss.totals.nll_sum, expected, 1e-9);
    nll.push_back(loss.totals.nll_sum);
  }
  EXPECT_NE(nll[0], nll[1]) << "a source token is context of the target";

  // Generation continues the same prefix: the prompt is the source with <sep>
  // for its eos, and greedy search picks what ForwardLm ranks first.
  GenerationInput input = Seq2SeqInput(*model, {11, 12, 13, 3}, data::TokenizerInfo{});
  EXPECT_TRUE(input.source.empty());
  ASSERT_EQ(input.prompt, (std::vector<int32_t>{11, 12, 13, 4}));
  SearchOptions search;
  search.beam = 1;
  search.max_length = 3;
  search.eos = -1;  // never stops early
  const at::Tensor prompt = at::tensor(std::vector<int64_t>{11, 12, 13, 4}).view({1, -1});
  const std::vector<Hypothesis> found = BeamSearch(*model, {}, prompt, search);
  ASSERT_EQ(found[0].tokens.size(), 3u);
  at::Tensor sequence = prompt;
  for (int64_t token : found[0].tokens) {
    at::NoGradGuard no_grad;
    EXPECT_EQ(model->ForwardLm(sequence)[0][-1].argmax().item<int64_t>(), token);
    sequence = at::cat({sequence, at::full({1, 1}, token, at::kLong)}, 1);
  }
}

}  // namespace
}  // namespace memtrain::trainer
