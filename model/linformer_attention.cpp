#include "model/linformer_attention.h"

#include <ATen/ATen.h>

#include <cmath>

#include "common/enum_names.h"
#include "model/attention_common.h"

namespace memtrain::model {
namespace {

// Only cross-attention decodes: the projected source, made at the first call.
class LinformerState final : public DecodeState {
 public:
  void Reorder(const at::Tensor& indices) override {
    for (at::Tensor* t : {&keys, &values}) {
      if (t->defined()) *t = t->index_select(0, indices.to(t->device()));
    }
  }
  std::vector<at::Tensor> Tensors() const override { return {keys, values}; }
  int64_t position() const override { return position_; }

  at::Tensor keys, values;  // [B, H, k, d]
  int64_t position_ = 0;
};

}  // namespace

at::Tensor MakeLinformerProjection(const LinformerOptions& options, int64_t copies) {
  const int64_t k = options.projected_length, n = options.max_length;
  const double bound = std::sqrt(6.0 / static_cast<double>(k + n)) / std::sqrt(2.0);
  return at::empty({copies, k, n}).uniform_(-bound, bound);
}

LinformerAttentionImpl::LinformerAttentionImpl(const AttentionOptions& options)
    : options_(options) {
  const LinformerOptions& linformer = options.linformer;
  TORCH_CHECK(!options.causal, options.layer,
              ": linformer has no causal form (each projected slot mixes every position, the "
              "future included; ATTENTION.md §3); use another kind for causal self-attention");
  CheckHeads(options);
  TORCH_CHECK(linformer.max_length > 0 && linformer.projected_length > 0, options.layer,
              ": linformer.max_length and projected_length must be positive, got ",
              linformer.max_length, " and ", linformer.projected_length);
  query_ = register_module("query", torch::nn::Linear(options.model_dim, options.model_dim));
  key_ = register_module("key", torch::nn::Linear(options.model_dim, options.model_dim));
  value_ = register_module("value", torch::nn::Linear(options.model_dim, options.model_dim));
  output_ = register_module("output", torch::nn::Linear(options.model_dim, options.model_dim));
  const bool learn = !linformer.freeze_projection;
  switch (linformer.sharing) {
    case LinformerSharing::kLayerwise: {
      const at::Tensor& shared = linformer.shared_projection;
      TORCH_CHECK(shared.defined(), options.layer,
                  ": layerwise linformer sharing needs the model's shared projection "
                  "(options.linformer.shared_projection, made by the Transformer)");
      TORCH_CHECK(
          shared.sizes() == at::IntArrayRef({1, linformer.projected_length, linformer.max_length}),
          options.layer, ": the shared linformer projection is ", shared.sizes(), ", expected [1, ",
          linformer.projected_length, ", ", linformer.max_length, "]");
      project_key_ = project_value_ = shared;
      break;
    }
    case LinformerSharing::kKeyValue:
      project_key_ = project_value_ =
          register_parameter("project_key", MakeLinformerProjection(linformer, 1), learn);
      break;
    case LinformerSharing::kHeadwise:
    case LinformerSharing::kNone: {
      const int64_t copies = linformer.sharing == LinformerSharing::kNone ? options.heads : 1;
      project_key_ =
          register_parameter("project_key", MakeLinformerProjection(linformer, copies), learn);
      project_value_ =
          register_parameter("project_value", MakeLinformerProjection(linformer, copies), learn);
      break;
    }
  }
}

std::unique_ptr<DecodeState> LinformerAttentionImpl::NewState(int64_t /*batch*/) {
  return std::make_unique<LinformerState>();
}

at::Tensor LinformerAttentionImpl::forward(const AttentionCall& call) {
  CheckCall(call, options_.model_dim, options_.layer);
  TORCH_CHECK(!call.causal, options_.layer, ": linformer has no causal form");
  LinformerState* state = nullptr;
  if (call.state != nullptr) {
    state = dynamic_cast<LinformerState*>(call.state);
    TORCH_CHECK(state != nullptr, options_.layer, ": the DecodeState is not a linformer state");
    TORCH_CHECK(call.memory.defined() || state->keys.defined(), options_.layer,
                ": linformer decodes only as cross-attention (it has no causal self-attention)");
  }
  const int64_t heads = options_.heads;
  const c10::ScalarType compute = ComputeType(call.query.scalar_type());
  const at::Tensor q = SplitHeads(query_(call.query), heads).to(compute);
  at::Tensor k, v;
  if (state != nullptr && state->keys.defined()) {
    k = state->keys;
    v = state->values;
  } else {
    const at::Tensor& source = call.memory.defined() ? call.memory : call.query;
    const int64_t s = source.size(1);
    TORCH_CHECK(s <= options_.linformer.max_length, options_.layer, ": ", s,
                " keys exceed linformer.max_length = ", options_.linformer.max_length,
                "; raise it (the projections have that many columns)");
    // Padding cannot be masked after the projection mixes positions, so
    // padded rows are zeroed before it (§3(a)).
    at::Tensor keep = at::ones({source.size(0), s, 1}, source.options());
    if (call.key_padding.defined())
      keep = call.key_padding.logical_not().unsqueeze(-1).to(source.scalar_type());
    const at::Tensor keys = SplitHeads(key_(source) * keep, heads).to(compute);
    const at::Tensor values = SplitHeads(value_(source) * keep, heads).to(compute);
    const AutocastOff full_precision;  // sums over the positions (attention.h)
    k = at::matmul(project_key_.narrow(2, 0, s).to(compute).unsqueeze(0), keys);  // [B, H, k, d]
    v = at::matmul(project_value_.narrow(2, 0, s).to(compute).unsqueeze(0), values);
    if (state != nullptr) {
      state->keys = k;
      state->values = v;
    }
  }
  if (state != nullptr) state->position_ += call.query.size(1);
  const at::Tensor attended = at::scaled_dot_product_attention(
      q, k, v, /*attn_mask=*/{}, is_training() ? options_.dropout : 0.0, /*is_causal=*/false);
  return output_(MergeHeads(attended.to(call.query.scalar_type())));
}

namespace {
const EnumNames<LinformerSharing>& LinformerSharingTable() {
  static const auto* names = new EnumNames<LinformerSharing>(
      "Linformer sharing", {{LinformerSharing::kNone, "none"},
                            {LinformerSharing::kHeadwise, "headwise"},
                            {LinformerSharing::kKeyValue, "key_value"},
                            {LinformerSharing::kLayerwise, "layerwise"}});
  return *names;
}
}  // namespace

std::vector<std::string> LinformerSharingNames() { return LinformerSharingTable().names(); }

bool AbslParseFlag(absl::string_view text, LinformerSharing* value, std::string* error) {
  return LinformerSharingTable().Parse(text, value, error);
}

std::string AbslUnparseFlag(LinformerSharing value) { return LinformerSharingTable().Name(value); }

}  // namespace memtrain::model
