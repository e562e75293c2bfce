#include "model/performer_attention.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <limits>

#include "common/enum_names.h"
#include "model/attention_common.h"
#include "model/linear_attention.h"

namespace memtrain::model {
namespace {

// Self-attention: the causal prefix (S and z as one [B, H, r, d + 1] tensor,
// at the running maximum log_scale [B, H]). Cross-attention: the source's
// summary, computed at the first call and reused.
class PerformerState final : public DecodeState {
 public:
  void Reorder(const at::Tensor& indices) override {
    for (at::Tensor* t : {&prefix.kv, &prefix.log_scale, &cross_kv}) {
      if (t->defined()) *t = t->index_select(0, indices.to(t->device()));
    }
  }
  std::vector<at::Tensor> Tensors() const override {
    return {prefix.kv, prefix.log_scale, cross_kv};
  }
  int64_t position() const override { return position_; }

  LinearPrefix prefix;
  at::Tensor cross_kv;
  int64_t position_ = 0;
  bool cross = false;
};

// FNV-1a: a seed per (seed, layer, redraw) that is the same on every rank and
// platform (std::hash is not).
uint64_t ProjectionSeed(uint64_t seed, const std::string& layer, int64_t redraw) {
  uint64_t hash = 1469598103934665603ULL ^ seed;
  for (unsigned char c : layer) hash = (hash ^ c) * 1099511628211ULL;
  return (hash ^ static_cast<uint64_t>(redraw)) * 1099511628211ULL;
}

// Keys' exponent and running maximum over the visible keys seen so far (the
// stabilizer of §4(d)): a padded key is excluded from the max and gets a zero
// feature; with `causal` the max at j covers keys <= j (and the prefix),
// otherwise all keys.
struct ScaledKeys {
  at::Tensor features;   // [B, H, s, r], true feature = features * exp(log_scale)
  at::Tensor log_scale;  // [B, H, s]
};

ScaledKeys StabilizedKeys(const at::Tensor& exponent, const at::Tensor& visible, bool causal,
                          const at::Tensor& prefix_scale) {
  // The dtype's lowest finite value, not -inf: lowest - lowest is 0, not NaN.
  const double lowest = exponent.scalar_type() == at::kDouble
                            ? std::numeric_limits<double>::lowest()
                            : std::numeric_limits<float>::lowest();
  const at::Tensor low = at::full({}, lowest, exponent.options());
  const at::Tensor row_max = at::where(visible, exponent.amax(-1).detach(), low);  // [B, H, s]
  at::Tensor scale = causal ? std::get<0>(row_max.cummax(2))
                            : row_max.amax(-1, /*keepdim=*/true).expand_as(row_max);
  if (prefix_scale.defined()) scale = at::maximum(scale, prefix_scale.unsqueeze(-1));
  const at::Tensor shifted = at::where(visible.unsqueeze(-1), exponent - scale.unsqueeze(-1), low);
  return {shifted.exp(), scale};
}

}  // namespace

at::Tensor DrawPerformerProjection(int64_t features, int64_t dim, bool orthogonal,
                                   int64_t ortho_scaling, uint64_t seed) {
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto options = at::TensorOptions().dtype(at::kDouble);
  if (!orthogonal) return at::randn({features, dim}, generator, options);
  std::vector<at::Tensor> blocks;
  for (int64_t rows = 0; rows < features; rows += dim) {
    const at::Tensor gaussian = at::randn({dim, dim}, generator, options);
    // Signs fixed so that diag(R) > 0: only then is Q Haar-distributed.
    // LAPACK's raw Q gives every row a first coordinate of one sign, and the
    // estimator a bias that no number of features removes.
    auto [q, r] = at::linalg_qr(gaussian);
    blocks.push_back((q * r.diagonal().sign().unsqueeze(0)).t());
  }
  const at::Tensor stacked = at::cat(blocks, 0).slice(0, 0, features);
  const at::Tensor norms =
      ortho_scaling == 0
          ? at::randn({features, dim}, generator, options).norm(2, {1}, /*keepdim=*/true)
          : at::full({features, 1}, std::sqrt(static_cast<double>(dim)), options);
  return stacked * norms;
}

PerformerAttentionImpl::PerformerAttentionImpl(const AttentionOptions& options)
    : options_(options) {
  const PerformerOptions& performer = options.performer;
  CheckHeads(options);
  TORCH_CHECK(performer.features > 0, options.layer, ": performer.features must be positive, got ",
              performer.features);
  TORCH_CHECK(performer.ortho_scaling == 0 || performer.ortho_scaling == 1, options.layer,
              ": performer.ortho_scaling must be 0 or 1, got ", performer.ortho_scaling);
  TORCH_CHECK(performer.chunk > 0 && performer.redraw_interval >= 0, options.layer,
              ": performer.chunk must be positive and redraw_interval non-negative, got ",
              performer.chunk, " and ", performer.redraw_interval);
  query_ = register_module("query", torch::nn::Linear(options.model_dim, options.model_dim));
  key_ = register_module("key", torch::nn::Linear(options.model_dim, options.model_dim));
  value_ = register_module("value", torch::nn::Linear(options.model_dim, options.model_dim));
  output_ = register_module("output", torch::nn::Linear(options.model_dim, options.model_dim));
  const int64_t head_dim = options.model_dim / options.heads;
  projection_ = register_buffer(
      "projection", DrawPerformerProjection(performer.features, head_dim, performer.orthogonal,
                                            performer.ortho_scaling,
                                            ProjectionSeed(performer.seed, options.layer, 0))
                        .to(at::kFloat));
  // A floating buffer, because Module::to(dtype) converts every buffer; the
  // counts stay exact below 2^24.
  counters_ = register_buffer("redraw_counters", at::zeros({2}, at::kFloat));
}

int64_t PerformerAttentionImpl::redraws() const {
  return static_cast<int64_t>(counters_[0].item<double>());
}

void PerformerAttentionImpl::RedrawProjection() {
  const int64_t next = redraws() + 1;
  const PerformerOptions& performer = options_.performer;
  const at::Tensor drawn = DrawPerformerProjection(
      performer.features, projection_.size(1), performer.orthogonal, performer.ortho_scaling,
      ProjectionSeed(performer.seed, options_.layer, next));
  at::NoGradGuard no_grad;
  projection_.copy_(drawn);
  counters_[0].fill_(static_cast<double>(next));
  counters_[1].fill_(0.0);
}

std::unique_ptr<DecodeState> PerformerAttentionImpl::NewState(int64_t /*batch*/) {
  return std::make_unique<PerformerState>();
}

at::Tensor PerformerAttentionImpl::QueryFeatures(const at::Tensor& q) const {
  const AutocastOff full_precision;  // the feature exponents (attention.h)
  const PerformerOptions& performer = options_.performer;
  const double normalizer = std::pow(static_cast<double>(q.size(-1)), -0.25);
  const at::Tensor x = q * normalizer;
  const at::Tensor projected = at::matmul(x, projection_.to(x.scalar_type()).t());
  if (performer.kernel == PerformerKernel::kRelu)
    return at::relu(projected) + performer.relu_epsilon;
  const at::Tensor exponent = projected - x.square().sum(-1, /*keepdim=*/true) / 2;
  // The per-query max cancels between numerator and denominator except
  // against the additive stabilizer, so it is not detached (lucidrains
  // detaches it): the gradient is then the exact gradient of the output.
  const at::Tensor shifted = exponent - exponent.amax(-1, /*keepdim=*/true);
  return shifted.exp() / std::sqrt(static_cast<double>(performer.features)) + performer.stabilizer;
}

at::Tensor PerformerAttentionImpl::forward(const AttentionCall& call) {
  CheckCall(call, options_.model_dim, options_.layer);
  const PerformerOptions& performer = options_.performer;
  PerformerState* state = nullptr;
  if (call.state != nullptr) {
    state = dynamic_cast<PerformerState*>(call.state);
    TORCH_CHECK(state != nullptr, options_.layer, ": the DecodeState is not a performer state");
  }
  if (is_training() && performer.redraw_interval > 0) {
    if (counters_[1].item<double>() >= performer.redraw_interval) RedrawProjection();
    at::NoGradGuard no_grad;
    counters_[1].add_(1.0);
  }
  const bool cross = call.memory.defined() || (state != nullptr && state->cross);
  TORCH_CHECK(cross || state == nullptr || call.causal, options_.layer,
              ": incremental self-attention must be causal");
  const c10::ScalarType compute = ComputeType(call.query.scalar_type());
  const int64_t heads = options_.heads, batch = call.query.size(0);
  const at::Tensor query_features =
      QueryFeatures(SplitHeads(query_(call.query), heads).to(compute));

  // Key features and values with an all-ones column: the last output column
  // is then the normaliser q'.z.
  auto keys_and_values = [&](const at::Tensor& source, const at::Tensor& padding, bool causal,
                             const at::Tensor& prefix_scale) {
    const at::Tensor k = SplitHeads(key_(source), heads).to(compute);
    const at::Tensor v = SplitHeads(value_(source), heads).to(compute);
    const int64_t s = k.size(2);
    const at::Tensor visible =
        padding.defined() ? padding.logical_not().view({batch, 1, s}).expand({batch, heads, s})
                          : at::ones({batch, heads, s}, k.options().dtype(at::kBool));
    const AutocastOff full_precision;  // the feature exponents (attention.h)
    const at::Tensor x = k * std::pow(static_cast<double>(k.size(-1)), -0.25);
    const at::Tensor projected = at::matmul(x, projection_.to(compute).t());
    ScaledKeys keys;
    if (performer.kernel == PerformerKernel::kRelu) {
      keys.features = (at::relu(projected) + performer.relu_epsilon) * visible.unsqueeze(-1);
    } else {
      keys = StabilizedKeys(projected - x.square().sum(-1, /*keepdim=*/true) / 2, visible, causal,
                            prefix_scale);
      keys.features = keys.features / std::sqrt(static_cast<double>(performer.features));
    }
    return std::make_pair(keys, at::cat({v, at::ones_like(v.narrow(-1, 0, 1))}, -1));
  };

  at::Tensor attended;  // [B, H, n, d + 1]
  if (cross) {
    at::Tensor summary = state != nullptr ? state->cross_kv : at::Tensor();
    if (!summary.defined()) {
      TORCH_CHECK(call.memory.defined(), options_.layer,
                  ": the first cross-attention call needs the memory");
      auto [keys, values] = keys_and_values(call.memory, call.key_padding, false, {});
      summary = KeyValueSummary(keys.features, values);
      if (state != nullptr) {
        state->cross = true;
        state->cross_kv = summary;
      }
    }
    const AutocastOff full_precision;
    attended = at::matmul(query_features, summary);
  } else if (call.causal) {
    const int64_t n = call.query.size(1);
    at::Tensor padding = call.key_padding;
    if (state != nullptr && padding.defined()) {
      TORCH_CHECK(padding.sizes() == at::IntArrayRef({batch, n}), options_.layer,
                  ": in incremental mode key_padding covers the new positions, [", batch, ", ", n,
                  "]");
    }
    LinearPrefix* prefix = state != nullptr ? &state->prefix : nullptr;
    auto [keys, values] = keys_and_values(call.query, padding, true,
                                          prefix != nullptr ? prefix->log_scale : at::Tensor());
    attended = CausalLinearAttention(query_features, keys.features, values, keys.log_scale,
                                     performer.chunk, prefix);
    if (state != nullptr) state->position_ += n;
  } else {
    auto [keys, values] = keys_and_values(call.query, call.key_padding, false, {});
    const AutocastOff full_precision;
    attended = at::matmul(query_features, KeyValueSummary(keys.features, values));
  }
  const at::Tensor numerator = attended.narrow(-1, 0, attended.size(-1) - 1);
  const at::Tensor denominator = attended.narrow(-1, attended.size(-1) - 1, 1);
  // No visible key: numerator and denominator are both 0; the output is 0.
  const at::Tensor safe = at::where(denominator > 0, denominator, at::ones_like(denominator));
  return output_(MergeHeads((numerator / safe).to(call.query.scalar_type())));
}

namespace {
const EnumNames<PerformerKernel>& PerformerKernelTable() {
  static const auto* names = new EnumNames<PerformerKernel>(
      "Performer kernel",
      {{PerformerKernel::kSoftmax, "softmax"}, {PerformerKernel::kRelu, "relu"}});
  return *names;
}
}  // namespace

std::vector<std::string> PerformerKernelNames() { return PerformerKernelTable().names(); }

bool AbslParseFlag(absl::string_view text, PerformerKernel* value, std::string* error) {
  return PerformerKernelTable().Parse(text, value, error);
}

std::string AbslUnparseFlag(PerformerKernel value) { return PerformerKernelTable().Name(value); }

}  // namespace memtrain::model
