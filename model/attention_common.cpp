#include "model/attention_common.h"

#include <ATen/autocast_mode.h>

namespace memtrain::model {
namespace {

// Which keys each query may see, [B, 1, n, s] bool (true = visible): not
// padding, and with `causal`, key j <= query i + (s - n).
at::Tensor VisibleKeys(const at::Tensor& key_padding, int64_t batch, int64_t n, int64_t s,
                       bool causal, const at::TensorOptions& options) {
  at::Tensor visible = at::ones({batch, 1, n, s}, options.dtype(at::kBool));
  if (key_padding.defined()) {
    visible = visible & key_padding.logical_not().view({batch, 1, 1, s});
  }
  if (causal) {
    const at::Tensor query_position =
        at::arange(n, options.dtype(at::kLong)).view({n, 1}) + (s - n);
    const at::Tensor key_position = at::arange(s, options.dtype(at::kLong)).view({1, s});
    visible = visible & key_position.le(query_position).view({1, 1, n, s});
  }
  return visible;
}

// Softmax attention where `visible` ([B, 1, n, s] bool) allows.
at::Tensor MaskedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& visible, double dropout) {
  // A query with no visible key would make softmax 0/0. It is shown key 0
  // (so everything stays finite) and its output is zeroed afterwards.
  const int64_t s = k.size(2);
  const at::Tensor has_key = visible.any(-1, /*keepdim=*/true);
  const at::Tensor first_key = at::arange(s, q.options().dtype(at::kLong)).eq(0).view({1, 1, 1, s});
  const at::Tensor mask = visible.logical_or(has_key.logical_not().logical_and(first_key));
  const at::Tensor attended = at::scaled_dot_product_attention(q, k, v, mask, dropout,
                                                               /*is_causal=*/false, /*scale=*/1.0);
  return attended * has_key.to(attended.scalar_type());
}

// Whether SDPA's `is_causal` alone computes causal self-attention with this
// key padding at every unpadded query: no padding, or padding only at the end
// of each row on the CPU (as lm segments and seq2seq targets are padded): an
// unpadded query then never sees a padded key. (Elsewhere the check would
// cost a device sync.)
bool CausalFlagSuffices(const at::Tensor& key_padding) {
  if (!key_padding.defined()) return true;
  if (!key_padding.is_cpu()) return false;
  const int64_t s = key_padding.size(1);
  // Trailing only: no unpadded position after a padded one.
  return s < 2 || !key_padding.narrow(1, 0, s - 1)
                       .logical_and(key_padding.narrow(1, 1, s - 1).logical_not())
                       .any()
                       .item<bool>();
}

// Causal self-attention (n == s) with SDPA's `is_causal`: its CPU flash
// kernel skips the blocks above the diagonal, and no [B, 1, n, n] mask is
// built. Rows that are all padding output zeros, as MaskedAttention's do;
// padded queries of other rows also see padded keys before them (their
// outputs are never used).
at::Tensor CausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& key_padding, double dropout) {
  const at::Tensor attended = at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, dropout,
                                                               /*is_causal=*/true, /*scale=*/1.0);
  if (!key_padding.defined()) return attended;
  // With trailing padding a row's first key is padding only if all are.
  const at::Tensor has_key = key_padding.select(1, 0).logical_not().view({-1, 1, 1, 1});
  return attended * has_key.to(attended.scalar_type());
}

}  // namespace

at::Tensor SplitHeads(const at::Tensor& x, int64_t heads) {
  const int64_t batch = x.size(0), length = x.size(1), width = x.size(2);
  return x.view({batch, length, heads, width / heads}).transpose(1, 2);
}

at::Tensor MergeHeads(const at::Tensor& x) {
  const int64_t batch = x.size(0), heads = x.size(1), length = x.size(2), head_dim = x.size(3);
  return x.transpose(1, 2).reshape({batch, length, heads * head_dim});
}

at::Tensor PaddedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& key_padding, bool causal, double dropout) {
  const int64_t batch = q.size(0), n = q.size(2), s = k.size(2);
  if (causal && n == s && CausalFlagSuffices(key_padding))
    return CausalAttention(q, k, v, key_padding, dropout);
  return MaskedAttention(q, k, v, VisibleKeys(key_padding, batch, n, s, causal, q.options()),
                         dropout);
}

void CheckCall(const AttentionCall& call, int64_t model_dim, const std::string& layer) {
  TORCH_CHECK(call.query.defined() && call.query.dim() == 3 && call.query.size(2) == model_dim,
              layer, ": query must be [batch, length, ", model_dim, "], got ",
              call.query.defined() ? call.query.sizes() : c10::IntArrayRef{});
  const at::Tensor& keys = call.memory.defined() ? call.memory : call.query;
  if (call.memory.defined()) {
    TORCH_CHECK(call.memory.dim() == 3 && call.memory.size(0) == call.query.size(0) &&
                    call.memory.size(2) == model_dim,
                layer, ": memory must be [", call.query.size(0), ", length, ", model_dim, "], got ",
                call.memory.sizes());
    TORCH_CHECK(!call.causal, layer, ": cross-attention is never causal");
  }
  if (call.key_padding.defined() && call.state == nullptr) {
    TORCH_CHECK(call.key_padding.dim() == 2 && call.key_padding.size(0) == keys.size(0) &&
                    call.key_padding.size(1) == keys.size(1) &&
                    call.key_padding.scalar_type() == at::kBool,
                layer, ": key_padding must be bool [", keys.size(0), ", ", keys.size(1), "], got ",
                call.key_padding.sizes());
  }
}

void AppendToWindow(at::Tensor& keys, at::Tensor& values, at::Tensor& padding,
                    const at::Tensor& new_keys, const at::Tensor& new_values,
                    const at::Tensor& key_padding, const std::string& layer) {
  const int64_t batch = new_keys.size(0), n = new_keys.size(2);
  const at::Tensor new_padding = key_padding.defined()
                                     ? key_padding
                                     : at::zeros({batch, n}, new_keys.options().dtype(at::kBool));
  TORCH_CHECK(new_padding.sizes() == at::IntArrayRef({batch, n}), layer,
              ": in incremental mode key_padding covers the new positions, [", batch, ", ", n, "]");
  auto append = [](at::Tensor& window, const at::Tensor& fresh, int64_t dim) {
    window = window.defined() ? at::cat({window, fresh}, dim) : fresh;
  };
  append(keys, new_keys, 2);
  append(values, new_values, 2);
  append(padding, new_padding, 1);
}

void LocalWindow::Append(const at::Tensor& new_keys, const at::Tensor& new_values,
                         const at::Tensor& key_padding, const std::string& layer) {
  AppendToWindow(keys, values, padding, new_keys, new_values, key_padding, layer);
}

void LocalWindow::EndSegment(bool keep_as_cache) {
  if (!keep_as_cache || !keys.defined()) {
    keys = values = padding = at::Tensor();
    segment_begin = 0;
    return;
  }
  const int64_t kept = length() - segment_begin;
  keys = keys.narrow(2, segment_begin, kept).detach();
  values = values.narrow(2, segment_begin, kept).detach();
  padding = padding.narrow(1, segment_begin, kept);
  segment_begin = kept;
}

void LocalWindow::HideRows(const at::Tensor& starts) {
  if (!padding.defined()) return;
  padding = padding.logical_or(starts.to(padding.device(), at::kBool).view({-1, 1}));
}

void LocalWindow::Reorder(const at::Tensor& indices) {
  for (at::Tensor* t : {&keys, &values, &padding}) {
    if (t->defined()) *t = t->index_select(0, indices.to(t->device()));
  }
}

void LocalWindow::Save(std::map<std::string, at::Tensor>* state) const {
  if (!keys.defined()) return;
  (*state)["window.keys"] = keys.detach().cpu();
  (*state)["window.values"] = values.detach().cpu();
  (*state)["window.padding"] = padding.cpu();
  (*state)["window.segment_begin"] = at::tensor({segment_begin}, at::kLong);
}

at::Tensor StateTensor(const std::map<std::string, at::Tensor>& state, const std::string& name) {
  auto found = state.find(name);
  return found == state.end() ? at::Tensor() : found->second;
}

void LocalWindow::Load(const std::map<std::string, at::Tensor>& state) {
  keys = StateTensor(state, "window.keys");
  values = StateTensor(state, "window.values");
  padding = StateTensor(state, "window.padding");
  const at::Tensor begin = StateTensor(state, "window.segment_begin");
  // Checkpoints written before the XL cache hold the current segment only.
  segment_begin = begin.defined() ? begin.item<int64_t>() : 0;
}

void CheckHeads(const AttentionOptions& options) {
  TORCH_CHECK(options.heads > 0 && options.model_dim % options.heads == 0, options.layer,
              ": model width ", options.model_dim, " is not divisible by ", options.heads,
              " heads");
  TORCH_CHECK(!options.rotary || (options.model_dim / options.heads) % 2 == 0, options.layer,
              ": rotary positions need an even head width, got ",
              options.model_dim / options.heads);
}

c10::ScalarType ComputeType(c10::ScalarType input) {
  return input == at::kHalf || input == at::kBFloat16 ? at::kFloat : input;
}

AutocastOff::AutocastOff()
    : cuda_was_enabled_(at::autocast::is_autocast_enabled(at::kCUDA)),
      cpu_was_enabled_(at::autocast::is_autocast_enabled(at::kCPU)) {
  at::autocast::set_autocast_enabled(at::kCUDA, false);
  at::autocast::set_autocast_enabled(at::kCPU, false);
}

AutocastOff::~AutocastOff() {
  at::autocast::set_autocast_enabled(at::kCUDA, cuda_was_enabled_);
  at::autocast::set_autocast_enabled(at::kCPU, cpu_was_enabled_);
}

}  // namespace memtrain::model
