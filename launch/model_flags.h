// File: launch/model_flags.h
//
// The command-line flags that describe a model, shared by every binary that
// builds one (memtrain-model now; memtrain-train, -eval and -generate with the
// trainer), so a flagfile means the same model everywhere:
//
//   --vocab_size --model_dim --heads --ffn_dim --encoder_layers --decoder_layers
//   --dropout --attention_dropout --tie_embeddings
//   --attention=softmax|linformer|performer|memsizer|infinite|knn
//   --cross_attention=...   --knn_layers=8,9   --layer_attention=3:performer,5:knn
//   and each variant's hyper-parameters (--performer_features, --linformer_k,
//   --memsizer_slots, --knn_top_k, --knn_memory_size, --infinite_basis, ...),
//   whose defaults are the papers' (model/*_options.h, model/attention.h).
//
// The flags live here, at the binaries' edge, and libraries never read them:
// ModelOptionsFromFlags() turns them into TransformerOptions once.
#ifndef MEMTRAIN_LAUNCH_MODEL_FLAGS_H_
#define MEMTRAIN_LAUNCH_MODEL_FLAGS_H_

#include "absl/status/statusor.h"
#include "model/transformer.h"

namespace memtrain::launch {

/// The model the flags describe; kInvalidArgument naming the flag when a
/// value is malformed (e.g. --knn_layers=x).
absl::StatusOr<model::TransformerOptions> ModelOptionsFromFlags();

}  // namespace memtrain::launch

#endif  // MEMTRAIN_LAUNCH_MODEL_FLAGS_H_
