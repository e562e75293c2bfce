// Performer's feature redraws under real mpirun: ranks with different global
// RNG states and different data still hold bitwise the same projection in
// every layer, before and after redraws (the seed mixes options.seed, the
// layer name and the redraw number, never the rank or the global generator).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "model/performer_attention.h"
#include "model/transformer.h"
#include "tests/mpi_test_support.h"

namespace memtrain::model {
namespace {

// True when `tensor` is bitwise the same on every rank of `world`.
bool SameOnEveryRank(parallel::Communicator& world, const at::Tensor& tensor) {
  auto gathered = world.allgather(tensor.contiguous());
  EXPECT_TRUE(gathered.ok()) << gathered.status();
  if (!gathered.ok()) return false;
  for (int r = 0; r < world.size(); ++r) {
    if (!at::equal(gathered->select(0, r), tensor)) return false;
  }
  return true;
}

std::vector<at::Tensor> Projections(Transformer& model) {
  std::vector<at::Tensor> projections;
  for (const auto& item : model->named_buffers()) {
    if (item.key().find("projection") != std::string::npos)
      projections.push_back(item.value().clone());
  }
  return projections;
}

TEST(PerformerMpiTest, EveryRankDrawsAndRedrawsTheSameFeatures) {
  auto world = memtrain::testing::NewWorld();
  at::manual_seed(1000 + world->rank());  // the ranks' global generators differ
  TransformerOptions o;
  o.vocab_size = 40;
  o.model_dim = 16;
  o.heads = 2;
  o.ffn_dim = 32;
  o.encoder_layers = 0;
  o.decoder_layers = 3;
  o.attention = "performer";
  o.attention_options.performer.features = 12;
  o.attention_options.performer.redraw_interval = 2;
  auto made = MakeTransformer(o);
  ASSERT_TRUE(made.ok()) << made.status();
  Transformer model = *made;
  const std::vector<at::Tensor> initial = Projections(model);
  ASSERT_EQ(initial.size(), 3u);
  EXPECT_FALSE(at::equal(initial[0], initial[1])) << "layers must draw different features";
  for (const at::Tensor& projection : initial) EXPECT_TRUE(SameOnEveryRank(*world, projection));

  model->train();
  for (int step = 0; step < 5; ++step) {
    model->ForwardLm(at::randint(1, 40, {2, 7}, at::kLong));  // different data on every rank
  }
  const std::vector<at::Tensor> redrawn = Projections(model);
  for (size_t layer = 0; layer < redrawn.size(); ++layer) {
    EXPECT_FALSE(at::equal(redrawn[layer], initial[layer]))
        << "layer " << layer << " was not redrawn";
    EXPECT_TRUE(SameOnEveryRank(*world, redrawn[layer])) << "layer " << layer;
  }
  for (const auto& item : model->named_buffers()) {
    if (item.key().find("redraw_counters") != std::string::npos) {
      EXPECT_EQ(item.value()[0].item<double>(), 2.0) << item.key();
      EXPECT_TRUE(SameOnEveryRank(*world, item.value())) << item.key();
    }
  }
}

}  // namespace
}  // namespace memtrain::model
