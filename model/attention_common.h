// File: model/attention_common.h
//
// Pieces every attention variant uses: head split/merge, the key mask
// (padding and bottom-right-aligned causal), input checks, and fp32 compute
// for low-precision inputs. Internal to model/.
#ifndef MEMTRAIN_MODEL_ATTENTION_COMMON_H_
#define MEMTRAIN_MODEL_ATTENTION_COMMON_H_

#include <ATen/ATen.h>

#include <string>

#include "model/attention.h"

namespace memtrain::model {

/// [B, t, H*d] -> [B, H, t, d].
at::Tensor SplitHeads(const at::Tensor& x, int64_t heads);
/// [B, H, t, d] -> [B, t, H*d].
at::Tensor MergeHeads(const at::Tensor& x);

/// Which keys each query may see, [B, 1, n, s] bool (true = visible): not
/// padding, and with `causal`, key j <= query i + (s - n) (the queries are the
/// last n of s positions: bottom-right alignment, as a KV cache needs).
at::Tensor VisibleKeys(const at::Tensor& key_padding, int64_t batch, int64_t n, int64_t s,
                       bool causal, const at::TensorOptions& options);

/// Throws (TORCH_CHECK, naming `layer`) unless `call` fits a layer of width
/// `model_dim`: 3-D query, matching memory and padding shapes, no causal
/// cross-attention.
void CheckCall(const AttentionCall& call, int64_t model_dim, const std::string& layer);

/// The dtype attention math runs in: float32 for half types, else the input's.
c10::ScalarType ComputeType(c10::ScalarType input);

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_ATTENTION_COMMON_H_
