// Helpers for tests that drive a Trainer step by step (under mpirun): a toy
// lm corpus, a tiny model with a knn layer, and its training options.
#ifndef MEMTRAIN_TESTS_TRAINER_TRAINER_TEST_SUPPORT_H_
#define MEMTRAIN_TESTS_TRAINER_TRAINER_TEST_SUPPORT_H_

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/mpi_test_support.h"
#include "tests/trainer/toy_corpus.h"
#include "trainer/trainer.h"

namespace memtrain::trainer::testing {

/// A toy lm corpus that rank 0 writes; every rank gets its path (collective).
inline std::string SharedToyLm(parallel::Communicator& world) {
  std::string path;
  if (world.rank() == 0) {
    path = ToyPath("toy_lm.h5");
    WriteToyLm(path, 40, /*seed=*/5);
  }
  return memtrain::testing::BroadcastString(world, path);
}

inline model::TransformerOptions TinyModel() {
  model::TransformerOptions o;
  o.model_dim = 16;
  o.heads = 2;
  o.ffn_dim = 32;
  o.encoder_layers = 0;
  o.decoder_layers = 2;
  o.dropout = 0.0;  // exact comparisons
  o.layer_attention = {{1, "knn"}};
  o.attention_options.knn.top_k = 4;
  o.attention_options.knn.memory_size = 64;
  return o;
}

inline TrainerOptions TinyTraining(const std::string& path, int streams) {
  TrainerOptions o;
  o.train_data = path;
  o.steps = 20;
  o.batch.streams = streams;
  o.batch.segment_length = 8;
  o.lr_schedule = "constant";
  o.lr.lr = 1e-2;
  o.lr.warmup_steps = 0;
  o.label_smoothing = 0.1;
  o.clip_norm = 1.0;
  o.log_every = 100;
  o.bucket_mb = 4096.0 / (1 << 20);  // several buckets
  o.first_bucket_mb = 1024.0 / (1 << 20);
  // The knn gate gets no gradient while a stream's memory is empty.
  o.unused_parameters = parallel::UnusedParameters::kZeroFill;
  return o;
}

/// The loss of each of the next `steps` steps; stops (failing the test) at
/// the first step that fails.
inline std::vector<double> Losses(Trainer& trainer, int steps) {
  std::vector<double> losses;
  for (int i = 0; i < steps; ++i) {
    auto metrics = trainer.Step();
    EXPECT_TRUE(metrics.ok()) << metrics.status();
    if (!metrics.ok()) break;
    losses.push_back(metrics->loss);
  }
  return losses;
}

}  // namespace memtrain::trainer::testing

#endif  // MEMTRAIN_TESTS_TRAINER_TRAINER_TEST_SUPPORT_H_
