// File: model/memsizer_options.h
//
// Options of the `memsizer` attention kind (ATTENTION.md §5(c) defaults),
// apart from model/memsizer_attention.h so that model/attention.h can hold
// them by value (as LibTorch keeps nn/options/ apart from nn/modules/).
//
//   AttentionOptions options;  options.memsizer.slots = 4;  options.memsizer.cross_slots = 32;
#ifndef MEMTRAIN_MODEL_MEMSIZER_OPTIONS_H_
#define MEMTRAIN_MODEL_MEMSIZER_OPTIONS_H_

#include <cstdint>

namespace memtrain::model {

struct MemSizerOptions {
  /// k, memory slots (LM script: 32; MT decoder: 4 causal, 32 cross).
  int64_t slots = 32;
  /// k of the layers in the cross-attention role (AttentionOptions::cross);
  /// 0 = `slots`. The reference's MT decoder reads 32 slots of the source
  /// while its causal self-attention keeps only 4.
  int64_t cross_slots = 0;
  /// Init scale of the memory keys Phi (`q_init_scale`): xavier_uniform with
  /// gain scale^{-1/2} (LM: 32; MT: 8).
  double key_init_scale = 32.0;
  /// Init scale of W_l and W_r (`kv_init_scale`; LM: 1; MT: 8).
  double value_init_scale = 1.0;
  /// Chunk length of the causal kernel.
  int64_t chunk = 64;
};

/// Every field as X(variant, flag, member, help) (model/attention.h explains the tables).
// clang-format off
#define MEMTRAIN_MEMSIZER_OPTIONS(X)                                                              \
  X(memsizer, memsizer_slots, slots, "MemSizer memory slots k.")                                \
  X(memsizer, memsizer_cross_slots, cross_slots,                                                \
    "MemSizer memory slots k of cross-attention layers (0: --memsizer_slots).")                 \
  X(memsizer, memsizer_key_init_scale, key_init_scale, "MemSizer: init scale of the memory keys.") \
  X(memsizer, memsizer_value_init_scale, value_init_scale, "MemSizer: init scale of W_l and W_r.") \
  X(memsizer, memsizer_chunk, chunk, "MemSizer: chunk length of the causal kernel.")
// clang-format on

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_MEMSIZER_OPTIONS_H_
