// File: model/infinite_attention.h
//
// `infinite`: the ∞-former layer (ATTENTION.md §6). Short-term memory (STM):
// causal softmax attention over the current segment. Long-term memory (LTM):
// the previous segments' inputs as a continuous signal X̄(t) = Bᵀψ(t) over N
// Gaussian RBFs, B fitted by ridge regression; each query reads it through a
// Gaussian density N(t; μ, σ²) with μ = sigmoid(w_μ·u), σ² = softplus(w_σ·u),
// u = K_h q/√d, K_h = B W_K^h, in closed form r_j = N(μ; μ_j, σ² + σ_j²),
// z_h = V_hᵀ r. Output = STM output + W_O^ltm [z_1 … z_H].
//
//   AttentionOptions options;  options.causal = true;
//   auto attention = MakeAttention("infinite", options);
//   auto state = (*attention)->NewState(batch);
//   for (each segment) {
//     call.query = segment;  call.state = state.get();  y = (*attention)->forward(call);
//     static_cast<InfiniteDecodeState&>(*state).EndSegment();   // write the LTM
//   }
//
// State per stream, never in the module: InfiniteDecodeState holds B [rows,
// N, D] (detached), which rows have a memory, the current segment's STM
// keys/values and inputs (the write buffer), and the sticky-memory histogram
// of where this segment's LTM reads went. The LTM changes only at
// EndSegment, so decoding a segment token by token equals its full forward;
// B's size does not depend on how many segments were written. The state's
// tensors are replaced, never updated in place: a forward's graph may hold
// them (in float64 the read's cast is B itself), and the loss's backward
// runs after EndSegment (TransformerImpl::ForwardSegment).
//
// The math is a functional core (RbfBasis, FitSignal, GaussianRead), tested
// on its own. With InfiniteOptions::gate, what enters the LTM is
// X ⊙ sigmoid(Conv1d(X)): EndSegment keeps the buffer and the next forward
// fits it inside its graph, so the gate is trained. Departures
// (docs/ATTENTION.md): the KL regulariser (kl_weight) is σ only; sticky sampling is deterministic
// (quantiles of the bin distribution); G is solved per write in float64 rather than cached.
#ifndef MEMTRAIN_MODEL_INFINITE_ATTENTION_H_
#define MEMTRAIN_MODEL_INFINITE_ATTENTION_H_

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <functional>
#include <memory>
#include <vector>

#include "model/attention.h"

namespace memtrain::model {

/// ψ(t) for positions t [P]: [N, P] float64, Gaussian densities N(t; μ_j, σ_j²),
/// centres linspace(0, 1, N/|Σ|) repeated for each width in Σ.
at::Tensor RbfBasis(const at::Tensor& t, const InfiniteOptions& options);
/// The RBF centres and widths, [N] float64 each.
std::pair<at::Tensor, at::Tensor> RbfCentresAndWidths(const InfiniteOptions& options);
/// Ridge regression of x [P, D] placed at positions [P]: B [N, D] minimising
/// Σ_i ‖Bᵀψ(t_i) − x_i‖² + λ‖B‖², i.e. B = (FFᵀ + λI)⁻¹ F x, in float64.
at::Tensor FitSignal(const at::Tensor& positions, const at::Tensor& x,
                     const InfiniteOptions& options);
/// E_{N(μ, σ²)}[ψ(t)] in closed form: r [..., N] for μ, σ² [...].
at::Tensor GaussianRead(const at::Tensor& mu, const at::Tensor& variance,
                        const InfiniteOptions& options);

/// Sticky memories: `samples` positions on [0, 1] drawn where past reads put
/// their mass (`bin_mass` [D_b], not all zero), as bin left edges, ascending.
at::Tensor StickyPositions(const at::Tensor& bin_mass, int64_t samples);

class InfiniteDecodeState final : public SegmentMemoryState {
 public:
  InfiniteDecodeState(int64_t batch, const InfiniteOptions& options)
      : options_(options), batch_(batch) {}

  void Reorder(const at::Tensor& indices) override;
  std::vector<at::Tensor> Tensors() const override {
    return {coefficients, has_memory, keys,           values,         inputs,
            padding,      bin_mass,   pending_inputs, pending_padding};
  }
  int64_t position() const override { return position_; }

  /// Segment boundary: refits each row's LTM from its old signal (M samples,
  /// read uniformly or where the reads went if sticky, spread evenly over
  /// [0, τ]) and the segment's non-padding inputs (in [τ, 1]); the first
  /// segment of a row is fitted alone on [0, 1] with zero padding outside.
  /// Empties the STM window and the histogram. With the gate the fit is left
  /// to the next forward (pending_inputs) and the histogram kept for it.
  absl::Status EndSegment() override;
  /// Rows where `starts` ([B] bool) is true forget their LTM and hide their
  /// buffered positions (a new document).
  void NewDocument(const at::Tensor& starts) override;
  /// Every defined tensor above by its member name, and "position".
  absl::StatusOr<std::map<std::string, at::Tensor>> SaveState() const override;
  absl::Status LoadState(const std::map<std::string, at::Tensor>& state) override;
  /// With InfiniteOptions::kl_weight: λ_KL Σ over the segment's non-padding
  /// queries of rows with a memory of the mean over heads of
  /// KL(N(μ, σ²) ‖ N(μ, σ₀²)) = (σ²/σ₀² − log(σ²/σ₀²) − 1)/2, i.e. divided
  /// by the token count, the code's λ_KL · mean over (row, head, query).
  at::Tensor AuxiliaryLoss() const override { return kl_; }

  at::Tensor coefficients;  // B, [rows, N, D] float64, no autograd history; undefined until a write
  at::Tensor has_memory;    // [rows] bool
  at::Tensor keys, values;  // STM window [rows, H, t, d]
  at::Tensor inputs;        // write buffer [rows, t, D] (detached)
  at::Tensor padding;       // [rows, t] bool
  at::Tensor bin_mass;      // sticky histogram [rows, D_b] float64
  // With the gate on, the previous segment's write buffer until the next
  // forward fits it (EndSegment); undefined otherwise.
  at::Tensor pending_inputs, pending_padding;

 private:
  // Fits the write buffer's non-padding positions (each row's through
  // `gate`, or as they are when it is empty) into B as EndSegment describes,
  // and empties the histogram. B keeps the gate's graph.
  void Write(const at::Tensor& buffer, const at::Tensor& buffer_padding,
             const std::function<at::Tensor(const at::Tensor&)>& gate);

  const InfiniteOptions options_;
  int64_t batch_;
  int64_t position_ = 0;
  at::Tensor kl_;  // AuxiliaryLoss(), with the reads' graph
  friend class InfiniteAttentionImpl;
};

class InfiniteAttentionImpl : public AttentionImpl {
 public:
  /// Throws (naming the layer) for cross-attention or bad options.
  explicit InfiniteAttentionImpl(const AttentionOptions& options);

  at::Tensor forward(const AttentionCall& call) override;
  std::unique_ptr<DecodeState> NewState(int64_t batch) override;
  std::string kind() const override { return "infinite"; }
  AttentionCapabilities capabilities() const override {
    AttentionCapabilities caps;
    caps.cross = false;  // not defined by the paper
    return caps;         // the STM window grows within a segment: not constant_state
  }
  const AttentionOptions& options() const { return options_; }

 private:
  const AttentionOptions options_;
  torch::nn::Linear query_{nullptr}, key_{nullptr}, value_{nullptr}, output_{nullptr};
  torch::nn::Linear ltm_key_{nullptr}, ltm_value_{nullptr}, ltm_output_{nullptr};
  torch::nn::Linear mu_{nullptr}, sigma_{nullptr};  // w_μ, w_σ ∈ R^N ("affines")
  torch::nn::Conv1d gate_{nullptr};                 // only with options.infinite.gate

  // X ⊙ sigmoid(Conv1d_{k=3}(X)) along one row's positions, x [L, D]; zero
  // beyond both ends (the code's mask_type='cnn').
  at::Tensor Gate(const at::Tensor& x);
};

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_INFINITE_ATTENTION_H_
