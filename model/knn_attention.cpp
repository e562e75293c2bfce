#include "model/knn_attention.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/container/parameterdict.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "memory/exact_knn_memory.h"
#include "model/attention_common.h"
#include "model/positions.h"

namespace memtrain::model {
namespace {

// meliad's normalisation: x / sqrt(|x|^2 + 1e-6).
at::Tensor Normalize(const at::Tensor& x) { return x * at::rsqrt(x.pow(2).sum(-1, true) + 1e-6); }

}  // namespace

KnnDecodeState::KnnDecodeState(memory::KnnLayerMemory layer_memory, bool xl_cache)
    : memory_(std::move(layer_memory.memory)),
      streams_(std::move(layer_memory.streams)),
      scope_(layer_memory.scope),
      xl_cache_(xl_cache) {}

std::vector<std::pair<int64_t, std::vector<int64_t>>> KnnDecodeState::RowsByStream() const {
  std::vector<std::pair<int64_t, std::vector<int64_t>>> groups;
  for (size_t row = 0; row < streams_.size(); ++row) {
    auto group = std::find_if(groups.begin(), groups.end(),
                              [&](const auto& g) { return g.first == streams_[row]; });
    if (group == groups.end()) group = groups.insert(groups.end(), {streams_[row], {}});
    group->second.push_back(static_cast<int64_t>(row));
  }
  return groups;
}

void KnnDecodeState::Reorder(const at::Tensor& indices) {
  window.Reorder(indices);
  const at::Tensor rows = indices.to(at::kCPU, at::kLong).contiguous();
  std::vector<int64_t> streams;
  for (int64_t i = 0; i < rows.numel(); ++i) {
    streams.push_back(streams_.at(static_cast<size_t>(rows.data_ptr<int64_t>()[i])));
  }
  streams_ = std::move(streams);
}

absl::Status KnnDecodeState::EndSegment() {
  const int64_t begin = window.segment_begin, length = window.length() - begin;
  if (length > 0 && has_memory() && scope_ != memory::KnnScope::kPrebuilt) {
    const at::Tensor keys = window.keys.narrow(2, begin, length);
    const at::Tensor values = window.values.narrow(2, begin, length);
    const at::Tensor padding = window.padding.narrow(1, begin, length);
    for (const auto& [stream, rows] : RowsByStream()) {
      if (rows.size() > 1 && scope_ == memory::KnnScope::kStream) {
        return absl::FailedPreconditionError(
            "KnnDecodeState::EndSegment: rows share a memory stream after a reorder; writing "
            "would store the segment twice");
      }
      // Memory entries are grouped by head: [H, n, d]; a stream's rows follow each other.
      std::vector<at::Tensor> row_keys, row_values;
      for (const int64_t b : rows) {
        const at::Tensor kept = padding[b].logical_not().nonzero().view(-1).to(keys.device());
        row_keys.push_back(keys[b].index_select(1, kept));
        row_values.push_back(values[b].index_select(1, kept));
      }
      const absl::Status status =
          memory_->add(stream, at::cat(row_keys, 1), at::cat(row_values, 1));
      if (!status.ok()) return status;
    }
  }
  window.EndSegment(xl_cache_);
  return absl::OkStatus();
}

void KnnDecodeState::NewDocument(const at::Tensor& starts) {
  const at::Tensor rows = starts.to(at::kCPU, at::kBool).contiguous();
  TORCH_CHECK(rows.dim() == 1 && rows.numel() == static_cast<int64_t>(streams_.size()),
              "KnnDecodeState::NewDocument: expects [", streams_.size(), "] flags, got ",
              starts.sizes());
  if (has_memory() && scope_ == memory::KnnScope::kStream) {
    for (int64_t b = 0; b < rows.numel(); ++b) {
      if (rows.data_ptr<bool>()[b]) memory_->clear(streams_[static_cast<size_t>(b)]);
    }
  }
  window.HideRows(rows);  // the old document's positions
}

absl::StatusOr<std::map<std::string, at::Tensor>> KnnDecodeState::SaveState() const {
  std::map<std::string, at::Tensor> state;
  if (has_memory()) {
    auto memory = memory_->SaveState();
    if (!memory.ok()) return memory.status();
    for (auto& [name, tensor] : *memory) state["memory." + name] = std::move(tensor);
  }
  state["position"] = at::tensor({position_}, at::kLong);
  state["streams"] = at::tensor(streams_, at::kLong);
  window.Save(&state);
  return state;
}

absl::Status KnnDecodeState::LoadState(const std::map<std::string, at::Tensor>& state) {
  std::map<std::string, at::Tensor> memory;
  for (const auto& [name, tensor] : state) {
    if (absl::StartsWith(name, "memory.")) memory[name.substr(7)] = tensor;
  }
  if (!has_memory() && !memory.empty()) {
    return absl::InvalidArgumentError(
        "KnnDecodeState::LoadState: the state holds a memory, but this layer runs without one "
        "(--use_memory differs from the run that saved it)");
  }
  const at::Tensor position = StateTensor(state, "position"),
                   streams = StateTensor(state, "streams");
  if (!position.defined() || !streams.defined() ||
      streams.numel() != static_cast<int64_t>(streams_.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("KnnDecodeState::LoadState: needs 'position' and 'streams' for ",
                     streams_.size(), " rows"));
  }
  const at::Tensor saved_streams = streams.cpu().contiguous();
  streams_.assign(saved_streams.data_ptr<int64_t>(),
                  saved_streams.data_ptr<int64_t>() + saved_streams.numel());
  position_ = position.cpu()[0].item<int64_t>();
  window.Load(state);
  return has_memory() ? memory_->LoadState(memory) : absl::OkStatus();
}

KnnAttentionImpl::KnnAttentionImpl(const AttentionOptions& options) : options_(options) {
  TORCH_CHECK(!options.cross, options.layer,
              ": knn attention has no cross-attention form (not defined by the Memorizing "
              "Transformer paper); use softmax for cross-attention layers");
  CheckHeads(options);
  TORCH_CHECK(options.knn.top_k >= 1, options.layer, ": knn.top_k must be >= 1, got ",
              options.knn.top_k);
  TORCH_CHECK(options.knn.memory_size >= 1, options.layer, ": knn.memory_size must be >= 1, got ",
              options.knn.memory_size);
  const auto projection = torch::nn::LinearOptions(options.model_dim, options.model_dim)
                              .bias(options.knn.projection_bias);
  query_ = register_module("query", torch::nn::Linear(projection));
  key_ = register_module("key", torch::nn::Linear(projection));
  value_ = register_module("value", torch::nn::Linear(projection));
  output_ = register_module("output", torch::nn::Linear(options.model_dim, options.model_dim));
  // In a child module so that the projections come first in parameters(),
  // as every attention kind lists them ("head.gate_bias", "head.logit_scale").
  auto head = register_module("head", torch::nn::ParameterDict());
  gate_bias_ = head->insert("gate_bias",
                            at::full({options.heads}, options.knn.gate_bias).requires_grad_(true));
  logit_scale_ = head->insert(
      "logit_scale", at::full({options.heads}, options.knn.logit_scale).requires_grad_(true));
}

std::unique_ptr<DecodeState> KnnAttentionImpl::NewState(int64_t batch) {
  memory::KnnLayerMemory layer_memory;
  layer_memory.memory = std::make_shared<memory::ExactKnnMemory>(
      memory::ExactKnnMemoryOptions(options_.knn.memory_size));
  for (int64_t b = 0; b < batch; ++b) layer_memory.streams.push_back(b);
  return NewState(std::move(layer_memory));
}

std::unique_ptr<KnnDecodeState> KnnAttentionImpl::NewState(
    memory::KnnLayerMemory layer_memory) const {
  return std::make_unique<KnnDecodeState>(std::move(layer_memory), options_.xl_cache);
}

at::Tensor KnnAttentionImpl::forward(const AttentionCall& call) {
  CheckCall(call, options_.model_dim, options_.layer);
  TORCH_CHECK(!call.memory.defined(), options_.layer, ": knn attention is self-attention only");
  KnnDecodeState* state = StateOf<KnnDecodeState>(call, options_.layer, "knn");
  const int64_t heads = options_.heads, batch = call.query.size(0), n = call.query.size(1);
  const int64_t head_dim = options_.model_dim / heads;
  const c10::ScalarType compute = ComputeType(call.query.scalar_type());
  at::Tensor q = SplitHeads(query_(call.query), heads).to(compute);
  at::Tensor k = SplitHeads(key_(call.query), heads).to(compute);
  at::Tensor v = SplitHeads(value_(call.query), heads).to(compute);
  if (options_.knn.normalize_keys) {
    q = Normalize(q);
    k = Normalize(k);
  }
  at::Tensor padding = call.key_padding;
  if (state != nullptr) {
    TORCH_CHECK(state->streams().size() == static_cast<size_t>(batch), options_.layer,
                ": the state has ", state->streams().size(), " rows, the call ", batch);
    state->window.Append(k, v, padding, options_.layer);
    state->position_ += n;
    k = state->window.keys;
    v = state->window.values;
    padding = state->window.padding;
  }
  // Logit scale: |a_h|, times 1/sqrt(d) when the keys are not unit-norm.
  const double base =
      options_.knn.normalize_keys ? 1.0 : 1.0 / std::sqrt(static_cast<double>(head_dim));
  const at::Tensor scaled_q = q * (logit_scale_.abs().to(compute) * base).view({1, heads, 1, 1});

  // Local branch: with rotary positions counted from the window's start (the
  // queries are its last n); the memory branch below uses scaled_q as is.
  const bool rotary = options_.rotary;
  at::Tensor local = PaddedAttention(rotary ? RotaryPositions(scaled_q, k.size(2) - n) : scaled_q,
                                     rotary ? RotaryPositions(k, 0) : k, v, padding, call.causal,
                                     is_training() ? options_.dropout : 0.0);

  // Memory branch: per stream, top-k of the memory as it was before this
  // segment (EndSegment writes), the stream's rows in one search. A row that
  // retrieves nothing keeps `local`.
  if (state != nullptr && state->has_memory()) {
    const at::Tensor gate = at::sigmoid(gate_bias_).to(compute).view({1, heads, 1, 1});
    std::vector<at::Tensor> rows = local.unbind(0);
    for (const auto& [stream, members] : state->RowsByStream()) {
      const int64_t m = static_cast<int64_t>(members.size());
      const at::Tensor index = at::tensor(members, at::kLong).to(q.device());
      // [H, m * n, dk]: the rows' queries one after another.
      const at::Tensor queries =
          q.index_select(0, index).detach().transpose(0, 1).reshape({heads, m * n, -1});
      auto found = state->memory().search(stream, queries, options_.knn.top_k);
      TORCH_CHECK(found.ok(), options_.layer, ": kNN search failed: ", found.status().ToString());
      const int64_t hits = found->keys.size(2);
      if (hits == 0) continue;
      // [m, H, n, k, d]: the retrieved keys are constants; gradients reach q only.
      auto per_row = [&](const at::Tensor& t) {
        return t.to(compute).reshape({heads, m, n, hits, t.size(3)}).transpose(0, 1);
      };
      // Each query has its own k neighbours: a broadcast product and a sum,
      // not m * H * n matmuls of 1 x d by d x k (ATen runs those one by one;
      // 3x slower forward and backward at n = 512, k = 32).
      const at::Tensor logits =
          (scaled_q.index_select(0, index).unsqueeze(3) * per_row(found->keys)).sum(-1);
      const at::Tensor remembered =
          (at::softmax(logits, -1).unsqueeze(-1) * per_row(found->values)).sum(3);
      const std::vector<at::Tensor> mixed =
          (gate * remembered + (1 - gate) * local.index_select(0, index)).unbind(0);
      for (int64_t i = 0; i < m; ++i)
        rows[static_cast<size_t>(members[static_cast<size_t>(i)])] = mixed[static_cast<size_t>(i)];
    }
    local = at::stack(rows);
  }
  return output_(MergeHeads(local.to(call.query.scalar_type())));
}

}  // namespace memtrain::model
