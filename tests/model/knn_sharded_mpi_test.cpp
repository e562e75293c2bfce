// A model with a knn layer trains over document streams with its memory in a
// ShardedKnnMemory spread over the ranks (real mpirun, 2 ranks): gradients
// are averaged by hand, every rank's row is its own stream in the one memory,
// and the memory holds more than one rank's shard could.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>

#include "memory/exact_knn_memory.h"
#include "memory/sharded_knn_memory.h"
#include "model/knn_attention.h"
#include "model/transformer.h"
#include "tests/mpi_test_support.h"

namespace memtrain::model {
namespace {

TEST(KnnShardedMpiTest, AKnnModelTrainsWithAShardedMemory) {
  auto world = memtrain::testing::NewWorld();
  const int64_t rows = 2, segment = 8, shard_capacity = 24;
  TransformerOptions o;
  o.vocab_size = 40;
  o.model_dim = 16;
  o.heads = 2;
  o.ffn_dim = 32;
  o.encoder_layers = 0;
  o.decoder_layers = 2;
  o.dropout = 0.0;
  o.layer_attention = {{1, "knn"}};
  o.attention_options.knn.top_k = 4;
  at::manual_seed(5);  // the same initial parameters on every rank
  Transformer model(o);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));

  std::vector<std::shared_ptr<memory::ShardedKnnMemory>> memories;
  TransformerDecodeStates states =
      model->NewSegmentStates(rows, [&](int64_t /*layer*/, int64_t batch) {
        memories.push_back(std::make_shared<memory::ShardedKnnMemory>(
            *world,
            std::make_unique<memory::ExactKnnMemory>(memory::ExactKnnMemoryOptions(shard_capacity)),
            shard_capacity));
        memory::KnnLayerMemory layer_memory{memories.back(), {}};
        for (int64_t b = 0; b < batch; ++b)
          layer_memory.streams.push_back(world->rank() * batch + b);
        return layer_memory;
      });
  ASSERT_EQ(memories.size(), 1u);
  ASSERT_NE(dynamic_cast<KnnDecodeState*>(states.self[1].get()), nullptr);

  // Each rank's rows repeat their own segment: learnable, different per rank.
  at::manual_seed(100 + world->rank());
  const at::Tensor tokens = at::randint(1, o.vocab_size, {rows, segment}, at::kLong);
  std::vector<double> losses;
  for (int step = 0; step < 12; ++step) {
    optimizer.zero_grad();
    const at::Tensor logits = model->ForwardSegment(tokens, states);
    const at::Tensor loss = torch::nn::functional::cross_entropy(
        logits.narrow(1, 0, segment - 1).reshape({-1, o.vocab_size}),
        tokens.narrow(1, 1, segment - 1).reshape(-1));
    loss.backward();
    for (auto& parameter : model->parameters()) {
      if (!parameter.grad().defined()) continue;  // the gate before the memory holds anything
      at::Tensor grad = parameter.mutable_grad();
      ASSERT_TRUE(world->allreduce(grad, parallel::ReduceOp::kAvg).ok());
    }
    optimizer.step();
    at::Tensor mean = loss.detach().clone();
    ASSERT_TRUE(world->allreduce(mean, parallel::ReduceOp::kAvg).ok());
    losses.push_back(mean.item<double>());
  }
  EXPECT_LT(losses.back(), 0.5 * losses.front());
  // 12 segments of 8 tokens per stream: more than one shard's 24, all kept.
  EXPECT_EQ(memories[0]->size(world->rank() * rows), shard_capacity * world->size());
  // The gate learnt from retrieved memories, identically on every rank.
  for (const auto& item : model->named_parameters()) {
    auto gathered = world->allgather(item.value().detach().contiguous());
    ASSERT_TRUE(gathered.ok());
    for (int r = 0; r < world->size(); ++r) {
      EXPECT_TRUE(at::equal(gathered->select(0, r), item.value())) << item.key();
    }
    if (item.key().find("gate_bias") != std::string::npos) {
      EXPECT_GT(item.value().abs().max().item<double>(), 0.0) << item.key();
    }
  }
}

}  // namespace
}  // namespace memtrain::model
