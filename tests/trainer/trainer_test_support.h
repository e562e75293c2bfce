// Helpers for tests that drive a Trainer step by step.
#ifndef MEMTRAIN_TESTS_TRAINER_TRAINER_TEST_SUPPORT_H_
#define MEMTRAIN_TESTS_TRAINER_TRAINER_TEST_SUPPORT_H_

#include <gtest/gtest.h>

#include <vector>

#include "trainer/trainer.h"

namespace memtrain::trainer::testing {

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
