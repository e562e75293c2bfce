#include "model/softmax_attention.h"

#include <ATen/ATen.h>

#include <cmath>

#include "model/attention_common.h"
#include "model/positions.h"

namespace memtrain::model {
namespace {

// Self-attention: the local window (this segment's positions so far and,
// with an XL cache, the previous segment's). Cross-attention: the projected
// source, computed at the first call and reused for every later step.
class SoftmaxState final : public SegmentMemoryState {
 public:
  explicit SoftmaxState(bool xl_cache) : xl_cache_(xl_cache) {}
  void Reorder(const at::Tensor& indices) override {
    window.Reorder(indices);
    for (at::Tensor* t : {&source_keys, &source_values, &source_padding}) {
      if (t->defined()) *t = t->index_select(0, indices.to(t->device()));
    }
  }
  std::vector<at::Tensor> Tensors() const override {
    return {window.keys, window.values, window.padding, source_keys, source_values, source_padding};
  }
  int64_t position() const override { return position_; }
  absl::Status EndSegment() override {
    window.EndSegment(xl_cache_);
    return absl::OkStatus();
  }
  void NewDocument(const at::Tensor& starts) override { window.HideRows(starts); }
  absl::StatusOr<std::map<std::string, at::Tensor>> SaveState() const override {
    std::map<std::string, at::Tensor> state;
    state["position"] = at::tensor({position_}, at::kLong);
    window.Save(&state);
    return state;
  }
  absl::Status LoadState(const std::map<std::string, at::Tensor>& state) override {
    const at::Tensor position = StateTensor(state, "position");
    if (!position.defined()) return absl::InvalidArgumentError("softmax state: needs 'position'");
    position_ = position.item<int64_t>();
    window.Load(state);
    return absl::OkStatus();
  }

  LocalWindow window;
  at::Tensor source_keys, source_values;  // [B, H, s, d]
  at::Tensor source_padding;              // [B, s] bool
  int64_t position_ = 0;
  bool cross = false;

 private:
  const bool xl_cache_;
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
  return std::make_unique<SoftmaxState>(options_.xl_cache);
}

std::unique_ptr<SegmentMemoryState> SoftmaxAttentionImpl::NewSegmentState(int64_t /*batch*/) {
  if (!options_.xl_cache) return nullptr;  // attends within the segment
  return std::make_unique<SoftmaxState>(/*xl_cache=*/true);
}

at::Tensor SoftmaxAttentionImpl::forward(const AttentionCall& call) {
  CheckCall(call, options_.model_dim, options_.layer);
  SoftmaxState* state = StateOf<SoftmaxState>(call, options_.layer, "softmax");
  const int64_t heads = options_.heads;
  at::Tensor q = SplitHeads(query_(call.query), heads);
  at::Tensor k, v, padding;
  bool cross = call.memory.defined();
  if (state != nullptr && state->cross) cross = true;
  if (cross) {
    if (state != nullptr && state->source_keys.defined()) {
      k = state->source_keys;
      v = state->source_values;
      padding = state->source_padding;
    } else {
      TORCH_CHECK(call.memory.defined(), options_.layer,
                  ": the first cross-attention call needs the memory");
      k = SplitHeads(key_(call.memory), heads);
      v = SplitHeads(value_(call.memory), heads);
      padding = call.key_padding;
      if (state != nullptr) {
        state->cross = true;
        state->source_keys = k;
        state->source_values = v;
        state->source_padding = padding;
      }
    }
  } else {
    k = SplitHeads(key_(call.query), heads);
    v = SplitHeads(value_(call.query), heads);
    padding = call.key_padding;
    if (state != nullptr) {
      state->window.Append(k, v, call.key_padding, options_.layer);
      state->position_ += call.query.size(1);
      k = state->window.keys;
      v = state->window.values;
      padding = state->window.padding;
    }
  }
  const c10::ScalarType compute = ComputeType(q.scalar_type());
  const double scale = 1.0 / std::sqrt(static_cast<double>(options_.model_dim / heads));
  q = q.to(compute);
  k = k.to(compute);
  if (options_.rotary && !cross) {
    // Positions count from the window's start; the queries are its last n.
    q = RotaryPositions(q, k.size(2) - q.size(2));
    k = RotaryPositions(k, 0);
  }
  const at::Tensor attended =
      PaddedAttention(q * scale, k, v.to(compute), padding, call.causal && !cross,
                      is_training() ? options_.dropout : 0.0);
  return output_(MergeHeads(attended.to(call.query.scalar_type())));
}

}  // namespace memtrain::model
