// File: model/positions.h
//
// How a Transformer knows where its tokens are: the `--positions` choice and
// the two encodings behind it.
//
//   sinusoidal  Vaswani et al.: a [n, D] table added to the scaled
//               embeddings, so every hidden state (and every key a layer
//               writes to a kNN memory) carries its absolute position.
//   rotary      Su et al. (RoFormer): no position in the residual stream;
//               inside each self-attention layer the query and key of
//               position p are rotated by p * theta_i, pair by pair, so a
//               score depends on the distance between them only. Keys a knn
//               layer stores in memory are taken before the rotation: they
//               hold content, not positions (the paper's requirement; meliad
//               uses a relative bias on the local scores for the same reason).
//   auto        rotary for a decoder-only model whose decoder self-attention
//               kinds all support it (segment-recurrent language models,
//               where sinusoidal positions restart in every segment), else
//               sinusoidal (the encoder-decoder models' behaviour so far).
//               TransformerImpl resolves it; model.json stores the result.
#ifndef MEMTRAIN_MODEL_POSITIONS_H_
#define MEMTRAIN_MODEL_POSITIONS_H_

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace memtrain::model {

enum class Positions { kAuto, kSinusoidal, kRotary };
std::vector<std::string> PositionsNames();
bool AbslParseFlag(absl::string_view text, Positions* value, std::string* error);
std::string AbslUnparseFlag(Positions value);

/// Sinusoidal positions [n, width] for absolute positions first .. first + n - 1.
at::Tensor SinusoidalPositions(int64_t first, int64_t n, int64_t width,
                               const at::TensorOptions& options);

/// Rotary position embedding of x [B, H, t, d] (d even) at positions
/// first .. first + t - 1: the halves (x1, x2) of each head vector become
/// (x1 cos - x2 sin, x2 cos + x1 sin) with angles p * 10000^(-2i/d) (the
/// GPT-NeoX layout). Computed in x's dtype; callers pass float32 or wider.
at::Tensor RotaryPositions(const at::Tensor& x, int64_t first);

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_POSITIONS_H_
