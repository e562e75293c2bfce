// memtrain-model: builds the model the flags describe and prints its layers,
// parameter counts and config, so a flagfile can be checked before training.
//
//   memtrain-model --encoder_layers=0 --decoder_layers=12 --attention=memsizer
//   memtrain-model --flagfile=configs/lm.flags --knn_layers=9 --json
#include <iostream>

#include "absl/flags/flag.h"
#include "common/binary.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "launch/model_flags.h"

ABSL_FLAG(bool, json, false, "Print the model config as JSON (what checkpoints store).");

int main(int argc, char** argv) {
  memtrain::InitBinary(
      argc, argv,
      "Prints the layers, attention kinds and parameter counts of the model the "
      "flags describe.\n  memtrain-model --attention=performer --decoder_layers=6");
  return memtrain::RunBinary("[model]", []() -> absl::Status {
    MEMTRAIN_ASSIGN_OR_RETURN(const memtrain::model::TransformerOptions options,
                              memtrain::launch::ModelOptionsFromFlags());
    MEMTRAIN_ASSIGN_OR_RETURN(auto model, memtrain::model::MakeTransformer(options));
    std::cout << (options.encoder_layers > 0 ? "encoder-decoder" : "decoder-only")
              << " Transformer\n"
              << model->ParameterReport();
    if (absl::GetFlag(FLAGS_json))
      std::cout << memtrain::model::TransformerOptionsToJson(options) << "\n";
    return absl::OkStatus();
  });
}
