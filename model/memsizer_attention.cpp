#include "model/memsizer_attention.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>

#include "model/attention_common.h"
#include "model/linear_attention.h"

namespace memtrain::model {
namespace {

// Self-attention: the unscaled prefix S = sum l_j r_j^T ([B, 1, k, D]) and the
// number of visible keys so far ([B]); 1/sqrt(count) is applied after the
// read (§5(d)). Cross-attention: the value memory, made at the first call.
class MemSizerState final : public DecodeState {
 public:
  void Reorder(const at::Tensor& indices) override {
    for (at::Tensor* t : {&prefix.kv, &count, &cross_memory}) {
      if (t->defined()) *t = t->index_select(0, indices.to(t->device()));
    }
  }
  std::vector<at::Tensor> Tensors() const override { return {prefix.kv, count, cross_memory}; }
  int64_t position() const override { return position_; }

  LinearPrefix prefix;
  at::Tensor count;
  at::Tensor cross_memory;  // [B, k, D]
  int64_t position_ = 0;
  bool cross = false;
};

torch::nn::Linear ScaledLinear(int64_t in, int64_t out, double init_scale) {
  torch::nn::Linear linear(in, out);
  torch::nn::init::xavier_uniform_(linear->weight, 1.0 / std::sqrt(init_scale));
  torch::nn::init::zeros_(linear->bias);
  return linear;
}

}  // namespace

MemSizerAttentionImpl::MemSizerAttentionImpl(const AttentionOptions& options)
    : options_(options),
      slots_(options.cross && options.memsizer.cross_slots > 0 ? options.memsizer.cross_slots
                                                               : options.memsizer.slots) {
  const MemSizerOptions& memsizer = options.memsizer;
  TORCH_CHECK(memsizer.slots > 0 && memsizer.chunk > 0, options.layer,
              ": memsizer.slots and memsizer.chunk must be positive, got ", memsizer.slots, " and ",
              memsizer.chunk);
  TORCH_CHECK(memsizer.cross_slots >= 0, options.layer,
              ": memsizer.cross_slots must be positive or 0 (= slots), got ", memsizer.cross_slots);
  TORCH_CHECK(memsizer.key_init_scale > 0 && memsizer.value_init_scale > 0, options.layer,
              ": memsizer init scales must be positive, got ", memsizer.key_init_scale, " and ",
              memsizer.value_init_scale);
  const int64_t width = options.model_dim, slots = slots_;
  keys_ =
      register_module("keys", ScaledLinear(width, options.heads * slots, memsizer.key_init_scale));
  left_ = register_module("left", ScaledLinear(width, slots, memsizer.value_init_scale));
  right_ = register_module("right", ScaledLinear(width, width, memsizer.value_init_scale));
  left_norm_ =
      register_module("left_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({slots})));
  right_norm_ =
      register_module("right_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
}

std::unique_ptr<DecodeState> MemSizerAttentionImpl::NewState(int64_t /*batch*/) {
  return std::make_unique<MemSizerState>();
}

at::Tensor MemSizerAttentionImpl::forward(const AttentionCall& call) {
  CheckCall(call, options_.model_dim, options_.layer);
  MemSizerState* state = nullptr;
  if (call.state != nullptr) {
    state = dynamic_cast<MemSizerState*>(call.state);
    TORCH_CHECK(state != nullptr, options_.layer, ": the DecodeState is not a memsizer state");
  }
  const bool cross = call.memory.defined() || (state != nullptr && state->cross);
  TORCH_CHECK(cross || state == nullptr || call.causal, options_.layer,
              ": incremental self-attention must be causal");
  const c10::ScalarType compute = ComputeType(call.query.scalar_type());
  const int64_t batch = call.query.size(0), n = call.query.size(1), slots = slots_;

  // Addressing: one distribution over the slots per head, averaged over heads
  // before the single value read; dropout acts on the distributions.
  at::Tensor address =
      keys_(call.query).to(compute).view({batch, n, options_.heads, slots}).softmax(-1);
  if (is_training() && options_.dropout > 0) address = at::dropout(address, options_.dropout, true);
  const at::Tensor p = address.mean(2);  // [B, n, k]

  // L (pad rows zeroed after LN_k) and R of a source, and its visible-key mask.
  auto left_right = [&](const at::Tensor& source, const at::Tensor& padding) {
    const at::Tensor visible =
        padding.defined() ? padding.logical_not().to(compute)
                          : at::ones({batch, source.size(1)}, call.query.options().dtype(compute));
    const at::Tensor left = left_norm_(left_(source)).to(compute) * visible.unsqueeze(-1);
    const at::Tensor right = right_norm_(right_(source)).to(compute);
    return std::make_tuple(left, right, visible);
  };

  at::Tensor out;
  if (cross || !call.causal) {
    at::Tensor memory = state != nullptr ? state->cross_memory : at::Tensor();
    if (!memory.defined()) {
      const at::Tensor& source = call.memory.defined() ? call.memory : call.query;
      auto [left, right, visible] = left_right(source, call.key_padding);
      // 1/sqrt of each row's true length; a row without keys reads zeros.
      const at::Tensor length = visible.sum(1).clamp_min(1).view({batch, 1, 1});
      memory = KeyValueSummary(left, right) / length.sqrt();
      if (state != nullptr) {
        state->cross = true;
        state->cross_memory = memory;
      }
    }
    const AutocastOff full_precision;  // reads the running summary (attention.h)
    out = at::matmul(p, memory);
  } else {
    at::Tensor padding = call.key_padding;
    if (state != nullptr && padding.defined()) {
      TORCH_CHECK(padding.sizes() == at::IntArrayRef({batch, n}), options_.layer,
                  ": in incremental mode key_padding covers the new positions, [", batch, ", ", n,
                  "]");
    }
    auto [left, right, visible] = left_right(call.query, padding);
    LinearPrefix* prefix = state != nullptr ? &state->prefix : nullptr;
    const at::Tensor unscaled =
        CausalLinearAttention(p.unsqueeze(1), left.unsqueeze(1), right.unsqueeze(1),
                              /*log_scale=*/{}, options_.memsizer.chunk, prefix)
            .squeeze(1);
    at::Tensor count = visible.cumsum(1);
    if (state != nullptr) {
      if (state->count.defined()) count = count + state->count.unsqueeze(1);
      state->count = count.select(1, n - 1);
      state->position_ += n;
    }
    out = unscaled / count.clamp_min(1).sqrt().unsqueeze(-1);
  }
  return out.to(call.query.scalar_type());
}

}  // namespace memtrain::model
