#include "trainer/fused_adam.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/serialize.h>

#include <sstream>
#include <type_traits>
#include <vector>

namespace memtrain::trainer {
namespace {

// Three parameters of different shapes and their gradients for each step.
struct Problem {
  std::vector<at::Tensor> initial;
  std::vector<std::vector<at::Tensor>> gradients;  // [step][parameter]
};

Problem MakeProblem(int steps) {
  at::manual_seed(3);
  Problem p;
  p.initial = {at::randn({7, 5}), at::randn({5}), at::randn({2, 3, 4})};
  for (int step = 0; step < steps; ++step) {
    std::vector<at::Tensor> grads;
    for (const at::Tensor& t : p.initial) grads.push_back(at::randn_like(t));
    p.gradients.push_back(grads);
  }
  return p;
}

std::vector<at::Tensor> Parameters(const Problem& p) {
  std::vector<at::Tensor> params;
  for (const at::Tensor& t : p.initial) params.push_back(t.clone().set_requires_grad(true));
  return params;
}

// Runs `steps` steps; `scale` divides the given gradients (the fused
// optimizer through its gradient scale, the reference by hand).
template <typename Optimizer>
void RunSteps(Optimizer& optimizer, std::vector<at::Tensor>& params, const Problem& p, double scale,
              bool fused) {
  for (const auto& grads : p.gradients) {
    for (size_t i = 0; i < params.size(); ++i) {
      params[i].mutable_grad() = fused ? grads[i].clone() : grads[i] / scale;
    }
    if constexpr (std::is_base_of_v<GradScaledStep, Optimizer>) {
      optimizer.StepWithGradScale(scale);
    } else {
      optimizer.step();
    }
  }
}

void ExpectClose(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(at::allclose(a[i], b[i], 1e-5, 1e-6))
        << "parameter " << i << ": " << (a[i] - b[i]).abs().max();
  }
}

TEST(FusedAdamTest, MatchesTorchAdamWithAndWithoutGradScale) {
  const Problem p = MakeProblem(6);
  for (const double scale : {1.0, 37.0}) {
    for (const bool amsgrad : {false, true}) {
      const auto options = torch::optim::AdamOptions(1e-2)
                               .betas({0.9, 0.98})
                               .eps(1e-8)
                               .weight_decay(0.1)
                               .amsgrad(amsgrad);
      std::vector<at::Tensor> reference_params = Parameters(p), fused_params = Parameters(p);
      torch::optim::Adam reference(reference_params, options);
      FusedAdam fused(fused_params, options);
      RunSteps(reference, reference_params, p, scale, false);
      RunSteps(fused, fused_params, p, scale, true);
      ExpectClose(fused_params, reference_params);
      // The parameters moved: the comparison is not of two no-ops.
      EXPECT_GT((fused_params[0] - p.initial[0]).abs().max().item<double>(), 1e-3);
    }
  }
}

TEST(FusedAdamTest, MatchesTorchAdamWDecoupledDecay) {
  const Problem p = MakeProblem(6);
  const auto options = torch::optim::AdamWOptions(1e-2).betas({0.9, 0.98}).weight_decay(0.3);
  std::vector<at::Tensor> reference_params = Parameters(p), fused_params = Parameters(p);
  torch::optim::AdamW reference(reference_params, options);
  FusedAdamW fused(fused_params, options);
  RunSteps(reference, reference_params, p, 5.0, false);
  RunSteps(fused, fused_params, p, 5.0, true);
  ExpectClose(fused_params, reference_params);
}

// Checkpoints: FusedAdam writes torch::optim::Adam's format, and a run
// continued from either side's state stays on the reference's path.
TEST(FusedAdamTest, StateIsTorchAdamsFormat) {
  const Problem p = MakeProblem(8);
  Problem first = p, second = p;
  first.gradients.resize(4);
  second.gradients.erase(second.gradients.begin(), second.gradients.begin() + 4);
  const auto options = torch::optim::AdamOptions(1e-2);

  std::vector<at::Tensor> fused_params = Parameters(p);
  FusedAdam fused(fused_params, options);
  RunSteps(fused, fused_params, first, 1.0, true);
  std::ostringstream saved;
  {
    torch::serialize::OutputArchive archive;
    fused.save(archive);
    archive.save_to(saved);
  }
  std::vector<at::Tensor> reference_params;
  for (const at::Tensor& t : fused_params)
    reference_params.push_back(t.detach().clone().set_requires_grad(true));
  torch::optim::Adam reference(reference_params, options);
  {
    std::istringstream in(saved.str());
    torch::serialize::InputArchive archive;
    archive.load_from(in);
    reference.load(archive);
  }
  RunSteps(reference, reference_params, second, 1.0, false);
  RunSteps(fused, fused_params, second, 1.0, true);
  ExpectClose(fused_params, reference_params);
}

}  // namespace
}  // namespace memtrain::trainer
