// memtrain-model: builds the model the flags describe and prints its layers,
// parameter counts and config, so a flagfile can be checked before training.
//
//   memtrain-model --encoder_layers=0 --decoder_layers=12 --attention=memsizer
//   memtrain-model --flagfile=configs/lm.flags --knn_layers=9 --json
#include <iostream>

#include "absl/flags/flag.h"
#include "common/binary.h"
#include "glog/logging.h"
#include "launch/model_flags.h"

ABSL_FLAG(bool, json, false, "Print the model config as JSON (what checkpoints store).");

int main(int argc, char** argv) {
  memtrain::InitBinary(argc, argv,
                       "Prints the layers, attention kinds and parameter counts of the model the "
                       "flags describe.\n  memtrain-model --attention=performer --decoder_layers=6");
  auto options = memtrain::launch::ModelOptionsFromFlags();
  if (!options.ok()) {
    LOG(ERROR) << "[model] " << options.status().message();
    return 2;
  }
  auto model = memtrain::model::MakeTransformer(*options);
  if (!model.ok()) {
    LOG(ERROR) << "[model] " << model.status().message();
    return 2;
  }
  std::cout << ((*options).encoder_layers > 0 ? "encoder-decoder" : "decoder-only") << " Transformer\n"
            << (*model)->ParameterReport();
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << memtrain::model::TransformerOptionsToJson(*options) << "\n";
  }
  return 0;
}
