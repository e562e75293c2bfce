#include "trainer/fused_adam.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "common/registry.h"
#include "common/status_macros.h"

namespace memtrain::trainer {
namespace {

// The options, state and kernel of each base.
template <typename Base>
struct Traits;
template <>
struct Traits<torch::optim::Adam> {
  using Options = torch::optim::AdamOptions;
  using State = torch::optim::AdamParamState;
  static constexpr auto kKernel = [](auto&&... args) { at::_fused_adam_(args...); };
};
template <>
struct Traits<torch::optim::AdamW> {
  using Options = torch::optim::AdamWOptions;
  using State = torch::optim::AdamWParamState;
  static constexpr auto kKernel = [](auto&&... args) { at::_fused_adamw_(args...); };
};

}  // namespace

template <typename Base>
at::Tensor FusedAdamBase<Base>::step(torch::optim::Optimizer::LossClosure closure) {
  TORCH_CHECK(!closure, "FusedAdam: closures are not supported");
  StepWithGradScale(1.0);
  return {};
}

template <typename Base>
void FusedAdamBase<Base>::StepWithGradScale(double grad_scale) {
  using Options = typename Traits<Base>::Options;
  using State = typename Traits<Base>::State;
  TORCH_CHECK(grad_scale > 0, "FusedAdam: the gradient scale must be positive, got ", grad_scale);
  at::NoGradGuard no_grad;
  for (auto& group : this->param_groups()) {
    const auto& options = static_cast<const Options&>(group.options());
    std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps;
    for (const at::Tensor& p : group.params()) {
      if (!p.grad().defined()) continue;
      TORCH_CHECK(!p.grad().is_sparse(), "FusedAdam: sparse gradients are not supported");
      // The state torch::optim::Adam would create, under the key it uses.
      auto& slot = this->state_[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto fresh = std::make_unique<State>();
        fresh->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        if (options.amsgrad()) fresh->max_exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        slot = std::move(fresh);
      }
      auto& state = static_cast<State&>(*slot);
      state.step(state.step() + 1);
      params.push_back(p);
      grads.push_back(p.grad());
      exp_avgs.push_back(state.exp_avg());
      exp_avg_sqs.push_back(state.exp_avg_sq());
      if (options.amsgrad()) max_exp_avg_sqs.push_back(state.max_exp_avg_sq());
      // The kernel reads the step count (already incremented) as a float tensor.
      steps.push_back(
          at::full({}, static_cast<double>(state.step()), p.options().dtype(at::kFloat)));
    }
    if (params.empty()) continue;
    std::optional<at::Tensor> scale;
    if (grad_scale != 1.0)
      scale = at::full({}, grad_scale, params.front().options().dtype(at::kFloat));
    const auto [beta1, beta2] = options.betas();
    Traits<Base>::kKernel(at::TensorList(params), at::TensorList(grads), at::TensorList(exp_avgs),
                          at::TensorList(exp_avg_sqs), at::TensorList(max_exp_avg_sqs),
                          at::TensorList(steps), options.lr(), beta1, beta2, options.weight_decay(),
                          options.eps(), options.amsgrad(),
                          /*maximize=*/false, scale, std::optional<at::Tensor>());
  }
}

template class FusedAdamBase<torch::optim::Adam>;
template class FusedAdamBase<torch::optim::AdamW>;

namespace {

using OptimizerFactory = std::function<std::unique_ptr<torch::optim::Optimizer>(
    std::vector<at::Tensor>, const OptimizerOptions&)>;

const NamedRegistry<OptimizerFactory>& Optimizers() {
  static const auto* registry = new NamedRegistry<OptimizerFactory>(
      "optimizer", {
                       {"adam",
                        [](std::vector<at::Tensor> parameters, const OptimizerOptions& o) {
                          return std::make_unique<FusedAdam>(std::move(parameters),
                                                             torch::optim::AdamOptions(o.lr)
                                                                 .betas({o.beta1, o.beta2})
                                                                 .eps(o.eps)
                                                                 .weight_decay(o.weight_decay));
                        }},
                       {"adamw",
                        [](std::vector<at::Tensor> parameters, const OptimizerOptions& o) {
                          return std::make_unique<FusedAdamW>(std::move(parameters),
                                                              torch::optim::AdamWOptions(o.lr)
                                                                  .betas({o.beta1, o.beta2})
                                                                  .eps(o.eps)
                                                                  .weight_decay(o.weight_decay));
                        }},
                   });
  return *registry;
}

}  // namespace

std::vector<std::string> OptimizerNames() { return Optimizers().names(); }

absl::StatusOr<std::unique_ptr<torch::optim::Optimizer>> MakeOptimizer(
    const std::string& name, std::vector<at::Tensor> parameters, const OptimizerOptions& options) {
  MEMTRAIN_ASSIGN_OR_RETURN(const OptimizerFactory* make, Optimizers().Find(name));
  return (*make)(std::move(parameters), options);
}

}  // namespace memtrain::trainer
