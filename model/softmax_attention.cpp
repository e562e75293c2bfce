#include "model/softmax_attention.h"

#include <ATen/ATen.h>

#include <cmath>

#include "model/attention_common.h"

namespace memtrain::model {
namespace {

// Self-attention: the keys/values of every position so far, and which of them
// are padding. Cross-attention: the projected source, computed at the first
// call and reused for every later step.
class SoftmaxState final : public DecodeState {
 public:
  void Reorder(const at::Tensor& indices) override {
    for (at::Tensor* t : {&keys, &values, &padding}) {
      if (t->defined()) *t = t->index_select(0, indices.to(t->device()));
    }
  }
  std::vector<at::Tensor> Tensors() const override { return {keys, values, padding}; }
  int64_t position() const override { return position_; }

  at::Tensor keys, values;  // [B, H, t, d]
  at::Tensor padding;       // [B, t] bool
  int64_t position_ = 0;
  bool cross = false;
};

}  // namespace

SoftmaxAttentionImpl::SoftmaxAttentionImpl(const AttentionOptions& options) : options_(options) {
  CheckHeads(options);
  query_ = register_module("query", torch::nn::Linear(options.model_dim, options.model_dim));
  key_ = register_module("key", torch::nn::Linear(options.model_dim, options.model_dim));
  value_ = register_module("value", torch::nn::Linear(options.model_dim, options.model_dim));
  output_ = register_module("output", torch::nn::Linear(options.model_dim, options.model_dim));
}

std::unique_ptr<DecodeState> SoftmaxAttentionImpl::NewState(int64_t /*batch*/) {
  return std::make_unique<SoftmaxState>();
}

at::Tensor SoftmaxAttentionImpl::forward(const AttentionCall& call) {
  CheckCall(call, options_.model_dim, options_.layer);
  SoftmaxState* state = StateOf<SoftmaxState>(call, options_.layer, "softmax");
  const int64_t heads = options_.heads;
  const at::Tensor q = SplitHeads(query_(call.query), heads);
  at::Tensor k, v, padding;
  bool cross = call.memory.defined();
  if (state != nullptr && state->cross) cross = true;
  if (cross) {
    if (state != nullptr && state->keys.defined()) {
      k = state->keys;
      v = state->values;
      padding = state->padding;
    } else {
      TORCH_CHECK(call.memory.defined(), options_.layer,
                  ": the first cross-attention call needs the memory");
      k = SplitHeads(key_(call.memory), heads);
      v = SplitHeads(value_(call.memory), heads);
      padding = call.key_padding;
      if (state != nullptr) {
        state->cross = true;
        state->keys = k;
        state->values = v;
        state->padding = padding;
      }
    }
  } else {
    const at::Tensor new_keys = SplitHeads(key_(call.query), heads);
    const at::Tensor new_values = SplitHeads(value_(call.query), heads);
    if (state != nullptr) {
      AppendToWindow(state->keys, state->values, state->padding, new_keys, new_values,
                     call.key_padding, options_.layer);
      state->position_ += call.query.size(1);
      k = state->keys;
      v = state->values;
      padding = state->padding;
    } else {
      k = new_keys;
      v = new_values;
      padding = call.key_padding;
    }
  }

  const c10::ScalarType compute = ComputeType(q.scalar_type());
  const double scale = 1.0 / std::sqrt(static_cast<double>(options_.model_dim / heads));
  const at::Tensor attended =
      PaddedAttention(q.to(compute) * scale, k.to(compute), v.to(compute), padding,
                      call.causal && !cross, is_training() ? options_.dropout : 0.0);
  return output_(MergeHeads(attended.to(call.query.scalar_type())));
}

}  // namespace memtrain::model
