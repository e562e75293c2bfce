// File: trainer/fused_adam.h
//
// Adam and AdamW whose step is one fused ATen kernel per parameter group
// (at::_fused_adam_ / at::_fused_adamw_, what PyTorch's `fused=True` runs)
// instead of torch::optim::Adam's eight element-wise passes per parameter,
// each its own parallel region. The options, the per-parameter state and the
// serialized form are torch::optim::Adam's and AdamW's (these classes derive
// from them), so a checkpoint's optimizer.pt loads either way.
//
//   auto adam = std::make_unique<FusedAdam>(parameters, torch::optim::AdamOptions(1e-3));
//   adam->StepWithGradScale(tokens);   // every gradient divided by `tokens` inside the kernel
//
// The gradient scale lets the trainer fold its division by the step's token
// count and the clipping factor into the update (one pass over the gradients
// fewer); the gradients hold the scaled values afterwards, as after a
// division. Same update as torch::optim::Adam to float rounding (the fused
// kernel computes the same formula in another order).
#ifndef MEMTRAIN_TRAINER_FUSED_ADAM_H_
#define MEMTRAIN_TRAINER_FUSED_ADAM_H_

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace memtrain::trainer {

/// An optimizer whose step can divide the gradients by a factor first.
class GradScaledStep {
 public:
  virtual ~GradScaledStep() = default;
  /// One step with every gradient g replaced by g / grad_scale (> 0) first.
  virtual void StepWithGradScale(double grad_scale) = 0;
};

template <typename Base>
class FusedAdamBase final : public Base, public GradScaledStep {
 public:
  using Base::Base;
  at::Tensor step(torch::optim::Optimizer::LossClosure closure = nullptr) override;
  void StepWithGradScale(double grad_scale) override;
};

using FusedAdam = FusedAdamBase<torch::optim::Adam>;
using FusedAdamW = FusedAdamBase<torch::optim::AdamW>;

/// The hyper-parameters every registered optimizer takes.
struct OptimizerOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0;  ///< L2 for adam, decoupled for adamw
};

/// The optimizers memtrain-train offers, by name: adam (FusedAdam), adamw (FusedAdamW).
std::vector<std::string> OptimizerNames();
/// kInvalidArgument naming the known optimizers for an unknown `name`.
absl::StatusOr<std::unique_ptr<torch::optim::Optimizer>> MakeOptimizer(
    const std::string& name, std::vector<at::Tensor> parameters, const OptimizerOptions& options);

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_FUSED_ADAM_H_
