// Dropout for training, as at::dropout (inverted: each element is kept with
// probability 1 - p and then scaled by 1 / (1 - p)), with a mask that is
// cheap to draw on the CPU: the residual, feed-forward and embedding dropout
// of model/transformer.h (--dropout), drawn as --dropout_sampler says.
//
// Why not at::dropout on the CPU: ATen draws its Bernoulli mask serially with
// its Mersenne twister except on Intel processors, where MKL's VSL does it in
// parallel; elsewhere (this project's AMD machines) the 13 dropouts of a
// 4-layer LM's step took 15 % of the step, in memtrain and in eager PyTorch
// alike (docs/BENCHMARKS.md, bench-train). Here the mask comes from
// Philox4x32-10 (Salmon et al., SC'11), the counter-based generator ATen
// itself uses on GPUs (at::philox_engine), computed sixteen blocks at a time
// so the compiler vectorizes it, in at::parallel_for (the `philox` sampler).
// The `aten` sampler is at::dropout itself: what models of model.json format
// 4 and older trained with, so that their checkpoints resume bitwise. Other
// devices and dtypes, and p = 1, use at::dropout under either name.
//
// The mask is a function of one 64-bit key, drawn from the default CPU
// generator (so a checkpoint's generator state replays it), and of each
// element's index in the input's contiguous order; the thread count does not
// change it. Element e uses 32-bit word (e mod 64) / 16 of Philox block
// 16 * (e / 64) + e mod 16 (counter = the block number, subsequence 0) and
// is kept when that word is below round((1 - p) * 2^32).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace memtrain::model {

/// How Dropout draws its masks on the CPU (see above).
enum class DropoutSampler { kPhilox, kAten };
std::vector<std::string> DropoutSamplerNames();
bool AbslParseFlag(absl::string_view text, DropoutSampler* value, std::string* error);
std::string AbslUnparseFlag(DropoutSampler value);

/// The input with dropout applied when `training` and p > 0; the input itself
/// otherwise. Differentiable (the mask scales the gradient).
at::Tensor Dropout(const at::Tensor& input, double p, bool training,
                   DropoutSampler sampler = DropoutSampler::kPhilox);

/// Dropout of some rows of a tensor, given only those rows: `input` [R, ...]
/// holds rows `rows` (int64 [R], indices into dimension 0) of a tensor of
/// `all_rows` rows. Each row gets the mask Dropout would give it in the whole
/// tensor, and the generator advances as Dropout of the whole would advance
/// it, so computing only some rows (TransformerBlockImpl skips the padding's
/// feed-forward) changes neither any computed row nor what comes after.
at::Tensor DropoutRows(const at::Tensor& input, const at::Tensor& rows, int64_t all_rows, double p,
                       bool training, DropoutSampler sampler = DropoutSampler::kPhilox);

/// The keep mask's scale factors (0 or 1 / (1 - p)) for `numel` elements and
/// `key`, as Dropout draws them on the CPU: exposed for the tests, which check
/// it against at::philox_engine.
at::Tensor DropoutScales(int64_t numel, double p, uint64_t key);
/// Rows `rows` (int64 [R], on the CPU) of DropoutScales(all_rows * row_numel,
/// p, key) viewed as [all_rows, row_numel]: [R, row_numel], drawing only those.
at::Tensor DropoutScalesOfRows(const at::Tensor& rows, int64_t all_rows, int64_t row_numel,
                               double p, uint64_t key);

}  // namespace memtrain::model
