#include "model/infinite_attention.h"

#include <ATen/ATen.h>

#include <cmath>
#include <functional>
#include <iterator>

#include "model/attention_common.h"

namespace memtrain::model {
namespace {

constexpr double kPi = 3.14159265358979323846;

// N(x; mean, variance), elementwise.
at::Tensor Gaussian(const at::Tensor& x, const at::Tensor& mean, const at::Tensor& variance) {
  return at::exp(-(x - mean).pow(2) / (2 * variance)) / at::sqrt(2 * kPi * variance);
}

at::Tensor Float64(const at::Tensor& like) {
  return at::empty({0}, like.options().dtype(at::kDouble));
}

}  // namespace

std::pair<at::Tensor, at::Tensor> RbfCentresAndWidths(const InfiniteOptions& options) {
  const int64_t per_width = options.basis / static_cast<int64_t>(options.widths.size());
  const at::Tensor grid = at::linspace(0.0, 1.0, per_width, at::kDouble);
  std::vector<at::Tensor> centres, widths;
  for (double width : options.widths) {
    centres.push_back(grid);
    widths.push_back(at::full({per_width}, width, at::kDouble));
  }
  return {at::cat(centres), at::cat(widths)};
}

at::Tensor RbfBasis(const at::Tensor& t, const InfiniteOptions& options) {
  auto [centres, widths] = RbfCentresAndWidths(options);
  centres = centres.to(t.device());
  widths = widths.to(t.device());
  return Gaussian(t.to(at::kDouble).view({1, -1}), centres.view({-1, 1}),
                  widths.pow(2).view({-1, 1}));
}

at::Tensor FitSignal(const at::Tensor& positions, const at::Tensor& x,
                     const InfiniteOptions& options) {
  const at::Tensor f = RbfBasis(positions, options);  // [N, P]
  const at::Tensor gram = at::matmul(f, f.t()) + options.ridge * at::eye(f.size(0), f.options());
  // Symmetric positive definite: a Cholesky solve in float64 (ATTENTION.md §6(d)).
  return at::cholesky_solve(at::matmul(f, x.to(at::kDouble)), at::linalg_cholesky(gram));
}

at::Tensor GaussianRead(const at::Tensor& mu, const at::Tensor& variance,
                        const InfiniteOptions& options) {
  auto [centres, widths] = RbfCentresAndWidths(options);
  const auto to = mu.options();
  return Gaussian(mu.unsqueeze(-1), centres.to(to), variance.unsqueeze(-1) + widths.pow(2).to(to));
}

at::Tensor StickyPositions(const at::Tensor& bin_mass, int64_t samples) {
  // Deterministic: the M quantiles (j + 1/2)/M of the bin distribution, each
  // at its bin's left edge (§6(a); §6(d) asks for reproducible sampling).
  const int64_t bins = bin_mass.size(0);
  const at::Tensor cdf = bin_mass.to(at::kDouble).cumsum(0) / bin_mass.to(at::kDouble).sum();
  const at::Tensor quantiles = (at::arange(samples, cdf.options()) + 0.5) / samples;
  return at::searchsorted(cdf, quantiles).clamp_max(bins - 1).to(at::kDouble) / bins;
}

void InfiniteDecodeState::Reorder(const at::Tensor& indices) {
  for (at::Tensor* t : {&coefficients, &has_memory, &keys, &values, &inputs, &padding, &bin_mass,
                        &pending_inputs, &pending_padding}) {
    if (t->defined()) *t = t->index_select(0, indices.to(t->device()));
  }
  batch_ = indices.numel();
}

// The names of Tensors()' entries, in its order.
constexpr const char* kStateNames[] = {"coefficients", "has_memory",     "keys",
                                       "values",       "inputs",         "padding",
                                       "bin_mass",     "pending_inputs", "pending_padding"};

absl::StatusOr<std::map<std::string, at::Tensor>> InfiniteDecodeState::SaveState() const {
  std::map<std::string, at::Tensor> state;
  state["position"] = at::tensor({position_}, at::kLong);
  const std::vector<at::Tensor> tensors = Tensors();
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].defined()) state[kStateNames[i]] = tensors[i].detach().cpu();
  }
  return state;
}

absl::Status InfiniteDecodeState::LoadState(const std::map<std::string, at::Tensor>& state) {
  auto position = state.find("position");
  if (position == state.end())
    return absl::InvalidArgumentError("InfiniteDecodeState::LoadState: no 'position'");
  position_ = position->second.cpu()[0].item<int64_t>();
  at::Tensor* members[] = {&coefficients, &has_memory, &keys,           &values,         &inputs,
                           &padding,      &bin_mass,   &pending_inputs, &pending_padding};
  for (size_t i = 0; i < std::size(members); ++i) {
    auto found = state.find(kStateNames[i]);
    *members[i] = found == state.end() ? at::Tensor() : found->second;
  }
  return absl::OkStatus();
}

void InfiniteDecodeState::Write(const at::Tensor& buffer, const at::Tensor& buffer_padding,
                                const std::function<at::Tensor(const at::Tensor&)>& gate) {
  const int64_t rows = buffer.size(0), width = buffer.size(2), basis = options_.basis;
  const double tau = options_.tau;
  const auto f64 = Float64(buffer).options();
  // Each row's new B, stacked into a new tensor below: never written in place.
  std::vector<at::Tensor> written;
  at::Tensor has_written = at::zeros({rows}, has_memory.options());
  for (int64_t b = 0; b < rows; ++b) {
    const at::Tensor kept = buffer_padding[b].logical_not().nonzero().view(-1).to(buffer.device());
    at::Tensor fresh = buffer[b].index_select(0, kept);  // [L, D]
    const int64_t length = fresh.size(0);
    if (length == 0) {
      written.push_back(coefficients.defined() ? coefficients[b] : at::zeros({basis, width}, f64));
      continue;
    }
    fresh = (gate ? gate(fresh) : fresh).to(at::kDouble);
    // Midpoints (i - 1/2)/L of the new vectors on [0, 1].
    const at::Tensor midpoints = (at::arange(length, f64) + 0.5) / length;
    at::Tensor positions, x;
    if (!has_memory[b].item<bool>()) {
      // First write: fit on [-1/2, 3/2] with zeros outside [0, 1] (the code's
      // padding, against edge effects).
      const int64_t pad = length / 2;
      positions = (at::arange(-pad, length + pad, f64) + 0.5) / length;
      x = at::cat({at::zeros({pad, width}, f64), fresh, at::zeros({pad, width}, f64)});
    } else {
      const int64_t samples = options_.samples;
      const at::Tensor spread = (at::arange(samples, f64) + 0.5) / samples;
      const bool sticky = options_.sticky && bin_mass[b].sum().item<double>() > 0;
      const at::Tensor read_at = sticky ? StickyPositions(bin_mass[b], samples) : spread;
      const at::Tensor old_signal = at::matmul(RbfBasis(read_at, options_).t(), coefficients[b]);
      // The samples are spread evenly over [0, τ] wherever they were read (the
      // code's G_inf has fixed positions): sticky sampling spends resolution
      // where the reads went, and a region nobody read is compressed rather
      // than left without points and pulled to zero by the ridge.
      positions = at::cat({tau * spread, tau + (1 - tau) * midpoints});
      x = at::cat({old_signal, fresh});
    }
    written.push_back(FitSignal(positions, x, options_));
    has_written[b] = true;
  }
  coefficients = at::stack(written);
  has_memory = has_memory.logical_or(has_written);
  bin_mass = at::zeros_like(bin_mass);
}

absl::Status InfiniteDecodeState::EndSegment() {
  if (!inputs.defined()) return absl::OkStatus();
  if (options_.gate) {
    // The gate is the layer's: its next forward fits this buffer through it,
    // inside the graph, so that the gate is trained (the code fits the new
    // memory inside the next forward too). B's graph ends here.
    if (coefficients.defined()) coefficients = coefficients.detach();
    pending_inputs = inputs;
    pending_padding = padding;
  } else {
    at::NoGradGuard no_grad;
    Write(inputs, padding, nullptr);
  }
  keys = values = inputs = padding = at::Tensor();
  return absl::OkStatus();
}

void InfiniteDecodeState::NewDocument(const at::Tensor& starts) {
  TORCH_CHECK(starts.dim() == 1 && starts.numel() == batch_,
              "InfiniteDecodeState::NewDocument: expects [", batch_, "] flags, got ",
              starts.sizes());
  const at::Tensor forget = starts.to(has_memory.device(), at::kBool);
  const at::Tensor keep = forget.logical_not();
  has_memory = has_memory.logical_and(keep);
  bin_mass = bin_mass * keep.view({-1, 1});
  if (coefficients.defined()) coefficients = coefficients * keep.view({-1, 1, 1});
  if (padding.defined()) padding = padding.logical_or(forget.view({-1, 1}));
  if (pending_padding.defined()) pending_padding = pending_padding.logical_or(forget.view({-1, 1}));
}

InfiniteAttentionImpl::InfiniteAttentionImpl(const AttentionOptions& options) : options_(options) {
  const InfiniteOptions& o = options.infinite;
  TORCH_CHECK(!options.cross, options.layer,
              ": infinite attention has no cross-attention form (not defined by the ∞-former "
              "paper); use softmax for cross-attention layers");
  CheckHeads(options);
  TORCH_CHECK(!o.widths.empty() && o.basis % static_cast<int64_t>(o.widths.size()) == 0 &&
                  o.basis >= 2 * static_cast<int64_t>(o.widths.size()),
              options.layer, ": infinite.basis (", o.basis,
              ") must be a multiple >= 2 of the number of widths (", o.widths.size(), ")");
  TORCH_CHECK(o.ridge > 0 && o.tau > 0 && o.tau < 1 && o.samples >= 1 && o.sticky_bins >= 1 &&
                  o.min_variance > 0 && o.kl_weight >= 0 && o.kl_sigma > 0,
              options.layer,
              ": infinite needs ridge > 0, 0 < tau < 1, samples >= 1, sticky_bins >= 1, "
              "min_variance > 0, kl_weight >= 0, kl_sigma > 0; got ridge ",
              o.ridge, ", tau ", o.tau, ", samples ", o.samples, ", sticky_bins ", o.sticky_bins,
              ", min_variance ", o.min_variance, ", kl_weight ", o.kl_weight, ", kl_sigma ",
              o.kl_sigma);
  const int64_t width = options.model_dim;
  auto no_bias = [&](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  query_ = register_module("query", torch::nn::Linear(width, width));
  key_ = register_module("key", torch::nn::Linear(width, width));
  value_ = register_module("value", torch::nn::Linear(width, width));
  output_ = register_module("output", torch::nn::Linear(width, width));
  ltm_key_ = register_module("ltm_key", no_bias(width, width));
  ltm_value_ = register_module("ltm_value", no_bias(width, width));
  ltm_output_ = register_module("ltm_output", no_bias(width, width));
  mu_ = register_module("mu", no_bias(o.basis, 1));
  sigma_ = register_module("sigma", no_bias(o.basis, 1));
  if (o.gate) {
    gate_ = register_module(
        "gate", torch::nn::Conv1d(torch::nn::Conv1dOptions(width, width, 3).padding(1)));
  }
}

at::Tensor InfiniteAttentionImpl::Gate(const at::Tensor& x) {
  const at::Tensor channels = x.to(gate_->weight.scalar_type()).t().unsqueeze(0);  // [1, D, L]
  return (channels * at::sigmoid(gate_(channels))).squeeze(0).t();
}

std::unique_ptr<DecodeState> InfiniteAttentionImpl::NewState(int64_t batch) {
  auto state = std::make_unique<InfiniteDecodeState>(batch, options_.infinite);
  const auto device = query_->weight.device();
  state->has_memory = at::zeros({batch}, at::TensorOptions(device).dtype(at::kBool));
  state->bin_mass = at::zeros({batch, options_.infinite.sticky_bins},
                              at::TensorOptions(device).dtype(at::kDouble));
  return state;
}

at::Tensor InfiniteAttentionImpl::forward(const AttentionCall& call) {
  CheckCall(call, options_.model_dim, options_.layer);
  TORCH_CHECK(!call.memory.defined(), options_.layer,
              ": infinite attention is self-attention only");
  InfiniteDecodeState* state = StateOf<InfiniteDecodeState>(call, options_.layer, "infinite");
  const int64_t heads = options_.heads, batch = call.query.size(0), n = call.query.size(1);
  const double root = std::sqrt(static_cast<double>(options_.model_dim / heads));
  const c10::ScalarType compute = ComputeType(call.query.scalar_type());
  const at::Tensor q = SplitHeads(query_(call.query), heads).to(compute);
  at::Tensor k = SplitHeads(key_(call.query), heads).to(compute);
  at::Tensor v = SplitHeads(value_(call.query), heads).to(compute);
  at::Tensor padding = call.key_padding;
  if (state != nullptr) {
    TORCH_CHECK(state->has_memory.size(0) == batch, options_.layer, ": the state has ",
                state->has_memory.size(0), " rows, the call ", batch);
    if (state->pending_inputs.defined()) {
      // The previous segment's write, through the gate (EndSegment): B keeps
      // its graph for the rest of this segment, so every read trains the gate.
      const AutocastOff full_precision;
      state->Write(state->pending_inputs, state->pending_padding,
                   [this](const at::Tensor& x) { return Gate(x); });
      state->pending_inputs = state->pending_padding = at::Tensor();
    }
    if (!state->inputs.defined()) state->kl_ = at::Tensor();  // a new segment
    AppendToWindow(state->keys, state->values, state->padding, k, v, padding, options_.layer);
    const at::Tensor input = call.query.detach();
    state->inputs = state->inputs.defined() ? at::cat({state->inputs, input}, 1) : input;
    state->position_ += n;
    k = state->keys;
    v = state->values;
    padding = state->padding;
  }
  // Short-term memory: softmax attention over the segment so far.
  const at::Tensor stm =
      PaddedAttention(q / root, k, v, padding, call.causal, is_training() ? options_.dropout : 0.0);
  at::Tensor out = output_(MergeHeads(stm.to(call.query.scalar_type())));
  if (state == nullptr || !state->coefficients.defined()) return out;

  // Long-term memory read, B frozen during the segment.
  const at::Tensor coefficients = state->coefficients.to(compute);                // [B, N, D]
  const at::Tensor keys = SplitHeads(ltm_key_(coefficients), heads).to(compute);  // [B, H, N, d]
  const at::Tensor values = SplitHeads(ltm_value_(coefficients), heads).to(compute);
  // The read's logits, its Gaussian's parameters and the read itself in
  // float32 (attention.h); only the output projection below is left to autocast.
  at::Tensor read_heads;  // [B, n, D]
  {
    const AutocastOff full_precision;
    const at::Tensor scores = at::matmul(q, keys.transpose(2, 3)) / root;  // u, [B, H, n, N]
    const at::Tensor mu = at::sigmoid(mu_(scores)).squeeze(-1);            // [B, H, n]
    const at::Tensor variance =
        at::softplus(sigma_(scores)).squeeze(-1).clamp_min(options_.infinite.min_variance);
    const at::Tensor read =
        at::matmul(GaussianRead(mu, variance, options_.infinite), values);  // [B, H, n, d]
    const at::Tensor present = state->has_memory.to(compute).view({batch, 1, 1, 1});
    if (options_.infinite.kl_weight > 0) {
      const double sigma0 = options_.infinite.kl_sigma;
      const at::Tensor ratio = variance / (sigma0 * sigma0);  // [B, H, n]
      at::Tensor counted = present.view({batch, 1, 1});
      if (call.key_padding.defined())
        counted = counted * call.key_padding.logical_not().to(compute).view({batch, 1, n});
      const at::Tensor kl = options_.infinite.kl_weight / static_cast<double>(heads) *
                            (0.5 * (ratio - at::log(ratio) - 1) * counted).sum();
      state->kl_ = state->kl_.defined() ? state->kl_ + kl : kl;
    }
    {
      // Sticky memories: where this segment's reads went, per bin (tails in the end bins).
      at::NoGradGuard no_grad;
      const int64_t bins = options_.infinite.sticky_bins;
      at::Tensor edges = at::arange(bins + 1, mu.options().dtype(at::kDouble)) / bins;
      edges[0] = -1e300;
      edges[bins] = 1e300;
      const at::Tensor z = (edges.view({1, 1, 1, -1}) - mu.to(at::kDouble).unsqueeze(-1)) /
                           at::sqrt(2 * variance.to(at::kDouble)).unsqueeze(-1);
      const at::Tensor cdf = 0.5 * (1 + at::erf(z));
      const at::Tensor mass = (cdf.slice(3, 1) - cdf.slice(3, 0, bins)).sum({1, 2});  // [B, bins]
      state->bin_mass = state->bin_mass + mass * state->has_memory.to(at::kDouble).view({batch, 1});
    }
    read_heads = MergeHeads((read * present).to(call.query.scalar_type()));
  }
  return out + ltm_output_(read_heads);
}

}  // namespace memtrain::model
