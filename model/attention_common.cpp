#include "model/attention_common.h"

namespace memtrain::model {

at::Tensor SplitHeads(const at::Tensor& x, int64_t heads) {
  const int64_t batch = x.size(0), length = x.size(1), width = x.size(2);
  return x.view({batch, length, heads, width / heads}).transpose(1, 2);
}

at::Tensor MergeHeads(const at::Tensor& x) {
  const int64_t batch = x.size(0), heads = x.size(1), length = x.size(2), head_dim = x.size(3);
  return x.transpose(1, 2).reshape({batch, length, heads * head_dim});
}

at::Tensor VisibleKeys(const at::Tensor& key_padding, int64_t batch, int64_t n, int64_t s,
                       bool causal, const at::TensorOptions& options) {
  at::Tensor visible = at::ones({batch, 1, n, s}, options.dtype(at::kBool));
  if (key_padding.defined()) {
    visible = visible & key_padding.logical_not().view({batch, 1, 1, s});
  }
  if (causal) {
    const at::Tensor query_position = at::arange(n, options.dtype(at::kLong)).view({n, 1}) + (s - n);
    const at::Tensor key_position = at::arange(s, options.dtype(at::kLong)).view({1, s});
    visible = visible & key_position.le(query_position).view({1, 1, n, s});
  }
  return visible;
}

void CheckCall(const AttentionCall& call, int64_t model_dim, const std::string& layer) {
  TORCH_CHECK(call.query.defined() && call.query.dim() == 3 && call.query.size(2) == model_dim,
              layer, ": query must be [batch, length, ", model_dim, "], got ",
              call.query.defined() ? call.query.sizes() : c10::IntArrayRef{});
  const at::Tensor& keys = call.memory.defined() ? call.memory : call.query;
  if (call.memory.defined()) {
    TORCH_CHECK(call.memory.dim() == 3 && call.memory.size(0) == call.query.size(0) &&
                    call.memory.size(2) == model_dim,
                layer, ": memory must be [", call.query.size(0), ", length, ", model_dim,
                "], got ", call.memory.sizes());
    TORCH_CHECK(!call.causal, layer, ": cross-attention is never causal");
  }
  if (call.key_padding.defined() && call.state == nullptr) {
    TORCH_CHECK(call.key_padding.dim() == 2 && call.key_padding.size(0) == keys.size(0) &&
                    call.key_padding.size(1) == keys.size(1) &&
                    call.key_padding.scalar_type() == at::kBool,
                layer, ": key_padding must be bool [", keys.size(0), ", ", keys.size(1),
                "], got ", call.key_padding.sizes());
  }
}

c10::ScalarType ComputeType(c10::ScalarType input) {
  return input == at::kHalf || input == at::kBFloat16 ? at::kFloat : input;
}

}  // namespace memtrain::model
