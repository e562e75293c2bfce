#include "model/softmax_attention.h"

#include <ATen/ATen.h>

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
  TORCH_CHECK(options.model_dim % options.heads == 0, options.layer, ": model width ",
              options.model_dim, " is not divisible by ", options.heads, " heads");
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
  SoftmaxState* state = nullptr;
  if (call.state != nullptr) {
    state = dynamic_cast<SoftmaxState*>(call.state);
    TORCH_CHECK(state != nullptr, options_.layer, ": the DecodeState is not a softmax state");
  }
  const int64_t heads = options_.heads;
  const int64_t batch = call.query.size(0);
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
      TORCH_CHECK(call.memory.defined(), options_.layer, ": the first cross-attention call needs the memory");
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
      const int64_t n = call.query.size(1);
      const at::Tensor new_padding =
          call.key_padding.defined() ? call.key_padding
                                     : at::zeros({batch, n}, call.query.options().dtype(at::kBool));
      TORCH_CHECK(new_padding.sizes() == at::IntArrayRef({batch, n}), options_.layer,
                  ": in incremental mode key_padding covers the new positions, [", batch, ", ", n, "]");
      state->keys = state->keys.defined() ? at::cat({state->keys, new_keys}, 2) : new_keys;
      state->values = state->values.defined() ? at::cat({state->values, new_values}, 2) : new_values;
      state->padding = state->padding.defined() ? at::cat({state->padding, new_padding}, 1) : new_padding;
      state->position_ += n;
      k = state->keys;
      v = state->values;
      padding = state->padding;
    } else {
      k = new_keys;
      v = new_values;
      padding = call.key_padding;
    }
  }

  const int64_t n = q.size(2), s = k.size(2);
  const at::Tensor visible = VisibleKeys(padding, batch, n, s, call.causal && !cross, q.options());
  // A query with no visible key would make softmax 0/0. It is shown key 0
  // (so everything stays finite) and its output is zeroed afterwards.
  const at::Tensor has_key = visible.any(-1, /*keepdim=*/true);
  const at::Tensor first_key = at::arange(s, q.options().dtype(at::kLong)).eq(0).view({1, 1, 1, s});
  const at::Tensor mask = visible.logical_or(has_key.logical_not().logical_and(first_key));
  const c10::ScalarType compute = ComputeType(q.scalar_type());
  at::Tensor attended = at::scaled_dot_product_attention(
      q.to(compute), k.to(compute), v.to(compute), mask,
      is_training() ? options_.dropout : 0.0, /*is_causal=*/false);
  attended = attended * has_key.to(compute);
  return output_(MergeHeads(attended.to(call.query.scalar_type())));
}

}  // namespace memtrain::model
