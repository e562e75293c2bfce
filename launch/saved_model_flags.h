// File: launch/saved_model_flags.h
//
// The flags of the binaries that use a saved model on a corpus
// (memtrain-eval, memtrain-generate): --model, --data, and the search
// settings --beam, --lenpen, --max_length. One definition, so both mean the
// same thing.
//
//   MEMTRAIN_ASSIGN_OR_RETURN(ModelAndData opened, OpenModelAndDataFromFlags(device));
//   trainer::SearchOptions search = SearchOptionsFromFlags(opened.data->tokenizer().eos_id);
#ifndef MEMTRAIN_LAUNCH_SAVED_MODEL_FLAGS_H_
#define MEMTRAIN_LAUNCH_SAVED_MODEL_FLAGS_H_

#include <c10/core/Device.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "checkpoints/model_file.h"
#include "data/corpus_file.h"
#include "trainer/search.h"

namespace memtrain::launch {

struct ModelAndData {
  checkpoints::LoadedModel model;
  std::string model_dir;
  std::string data_path;
  std::unique_ptr<data::CorpusFile> data;
};

/// What --data is for: its records (memtrain-eval, build-memory, generate's
/// record mode), or only its tokenizer (text in and out), which a model
/// directory saved with one (checkpoints::kSavedTokenizerFile) provides.
enum class DataNeed { kRecords, kTokenizerOnly };

/// Loads --model onto `device` and opens --data (or, for kTokenizerOnly
/// without --data, the model's saved tokenizer); kInvalidArgument when a
/// needed flag is missing, kFailedPrecondition when the tokenizers differ.
absl::StatusOr<ModelAndData> OpenModelAndDataFromFlags(const c10::Device& device,
                                                       DataNeed need = DataNeed::kRecords);

/// kInvalidArgument naming --beam or --max_length when below 1.
absl::Status CheckSearchFlags();

/// --beam, --lenpen, --max_length, with the corpus's `eos` id.
trainer::SearchOptions SearchOptionsFromFlags(int64_t eos);

}  // namespace memtrain::launch

#endif  // MEMTRAIN_LAUNCH_SAVED_MODEL_FLAGS_H_
