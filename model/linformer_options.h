// File: model/linformer_options.h
//
// Options of the `linformer` attention kind (ATTENTION.md §3(c) defaults),
// apart from model/linformer_attention.h so that model/attention.h can hold
// them by value (as LibTorch keeps nn/options/ apart from nn/modules/).
//
//   AttentionOptions options;  options.linformer.projected_length = 256;
#ifndef MEMTRAIN_MODEL_LINFORMER_OPTIONS_H_
#define MEMTRAIN_MODEL_LINFORMER_OPTIONS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace memtrain::model {

/// Which projections along the sequence axis are distinct (paper §4).
enum class LinformerSharing {
  kNone,       ///< E_i and F_i per head: 2H matrices per layer
  kHeadwise,   ///< one E and one F per layer, shared by the heads (fairseq's default)
  kKeyValue,   ///< one E per layer, E_i = F_i = E
  kLayerwise,  ///< one E for every linformer layer of the model (owned by the Transformer)
};

/// "none", "headwise", "key_value", "layerwise" (flags, model.json).
std::vector<std::string> LinformerSharingNames();
bool AbslParseFlag(absl::string_view text, LinformerSharing* value, std::string* error);
std::string AbslUnparseFlag(LinformerSharing value);

struct LinformerOptions {
  /// n_max: the longest key sequence; longer inputs are refused (fairseq and
  /// the paper: 512).
  int64_t max_length = 512;
  /// k, the projected length (fairseq `compressed=4` at n = 512 and the
  /// paper's Table 2: 128).
  int64_t projected_length = 128;
  /// Paper §4 sharing. Default: fairseq's (all flags 0).
  LinformerSharing sharing = LinformerSharing::kHeadwise;
  /// kLayerwise only: the [1, k, max_length] matrix every layer uses, made
  /// with MakeLinformerProjection and registered by the module above the
  /// layers (TransformerImpl), so it is one parameter, counted and saved once.
  /// Not part of the serialised configuration.
  at::Tensor shared_projection;
  /// Keep E/F at their random initialisation (fairseq `freeze_compress`; default false).
  bool freeze_projection = false;
};

/// Every serialised field as X(variant, flag, member, help) (model/attention.h
/// explains the tables); shared_projection is a tensor, not an option.
// clang-format off
#define MEMTRAIN_LINFORMER_OPTIONS(X)                                                             \
  X(linformer, linformer_max_length, max_length, "Linformer maximum sequence length n.")       \
  X(linformer, linformer_k, projected_length, "Linformer projected length k.")                  \
  X(linformer, linformer_sharing, sharing,                                                      \
    absl::StrCat("Linformer projections (paper §4), one of ",                                   \
                 absl::StrJoin(::memtrain::model::LinformerSharingNames(), ", "),                \
                 ": per head, per layer, E = F per layer, one E for the whole model."))        \
  X(linformer, linformer_freeze_projection, freeze_projection,                                  \
    "Linformer: keep E/F at their random initialisation.")
// clang-format on

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_LINFORMER_OPTIONS_H_
