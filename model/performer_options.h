// File: model/performer_options.h
//
// Options of the `performer` attention kind (ATTENTION.md §4(c) defaults),
// apart from model/performer_attention.h so that model/attention.h can hold
// them by value (as LibTorch keeps nn/options/ apart from nn/modules/).
//
//   AttentionOptions options;  options.performer.features = 512;
#ifndef MEMTRAIN_MODEL_PERFORMER_OPTIONS_H_
#define MEMTRAIN_MODEL_PERFORMER_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace memtrain::model {

enum class PerformerKernel {
  kSoftmax,  ///< positive random features, exp(w.x - |x|^2/2) (Lemma 1)
  kRelu,     ///< generalized attention, relu(w.x) + relu_epsilon (§2.2, App. A.4)
};

/// "softmax", "relu" (model.json).
std::vector<std::string> PerformerKernelNames();
bool AbslParseFlag(absl::string_view text, PerformerKernel* value, std::string* error);
std::string AbslUnparseFlag(PerformerKernel value);

struct PerformerOptions {
  /// r, random features per head (App. A.3: 256).
  int64_t features = 256;
  /// Which kernel the features estimate (default softmax; the paper's
  /// "Performer" experiments mostly mean ReLU).
  PerformerKernel kernel = PerformerKernel::kSoftmax;
  /// Orthogonal random features, blocks of d exactly orthogonal rows (App. A.3: true).
  bool orthogonal = true;
  /// Row norms of orthogonal features: 0 = chi_d distributed (unbiased for
  /// softmax), 1 = all sqrt(d) (SMREG). App. A.3: 0.
  int64_t ortho_scaling = 0;
  /// Added to softmax query features only, so key features stay exact
  /// rescalings (§4(d)); App. A.3 / TF: 1e-6.
  double stabilizer = 1e-6;
  /// Added to ReLU features (App. A.4: 1e-3).
  double relu_epsilon = 1e-3;
  /// Redraw the projection every this many training forward calls; 0 = never
  /// (lucidrains: 1000). Never in eval.
  int64_t redraw_interval = 1000;
  /// Chunk length of the causal kernel.
  int64_t chunk = 64;
  /// Mixed with the layer name and the redraw number to seed each projection.
  uint64_t seed = 0;
};

/// Every field as X(variant, flag, member, help): the flag --flag, the key
/// `member` in model.json (model/attention.h explains the tables).
// clang-format off
#define MEMTRAIN_PERFORMER_OPTIONS(X)                                                             \
  X(performer, performer_features, features, "Performer random features r per head.")          \
  X(performer, performer_kernel, kernel,                                                        \
    absl::StrCat("Performer kernel: ", absl::StrJoin(::memtrain::model::PerformerKernelNames(), ", "), \
                 " (positive features estimating softmax, or generalized ReLU attention)."))  \
  X(performer, performer_orthogonal, orthogonal, "Performer: orthogonal random features.")      \
  X(performer, performer_ortho_scaling, ortho_scaling,                                          \
    "Performer: row norms of orthogonal features, 0 chi-distributed, 1 all sqrt(d).")           \
  X(performer, performer_stabilizer, stabilizer, "Performer: added to softmax query features.") \
  X(performer, performer_relu_epsilon, relu_epsilon, "Performer: added to ReLU features.")      \
  X(performer, performer_redraw_interval, redraw_interval,                                      \
    "Performer: training calls between feature redraws (0: never).")                           \
  X(performer, performer_chunk, chunk, "Performer: chunk length of the causal kernel.")         \
  X(performer, performer_seed, seed, "Performer: mixed into every layer's projection seed.")
// clang-format on

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_PERFORMER_OPTIONS_H_
