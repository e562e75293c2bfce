// memtrain-prepare: a raw corpus into a memtrain HDF5 corpus (docs/DATA.md).
//
//   memtrain-prepare --corpus=wikitext --inputs=wiki.train.tokens --split=train
//       --vocab_size=16000 --output=wiki.train.h5
//   memtrain-prepare --corpus=wikitext --inputs=wiki.valid.tokens --split=valid
//       --tokenizer_from=wiki.train.h5 --output=wiki.valid.h5
//   memtrain-prepare --corpus=demo --demo_documents=2000 --output=demo.train.h5
//   memtrain-prepare --corpus=code --inputs=/usr/lib/python3.11 --code_packages=email,json
//       --output=code.train.h5   (scripts/code-corpus builds a train/valid pair)
//
// This binary deliberately links no LibTorch (data/tokenizer.h says why).
#include <unistd.h>

#include <fstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/binary.h"
#include "data/prepare.h"
#include "glog/logging.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, corpus, "", "wikitext | wmt16 | xsum | openorca | demo | code");
ABSL_FLAG(std::vector<std::string>, inputs, {},
          "Comma-separated input files. wikitext: .tokens/.raw files; wmt16: SOURCE,TARGET "
          "line-aligned files or .tsv files; xsum, openorca: JSON-lines files; the first four "
          "also take the Hugging Face hub's .parquet files (wmt16 also its .jsonl), read with "
          "pyarrow; code: directories; demo: none.");
ABSL_FLAG(std::string, output, "", "The HDF5 corpus to write (atomically).");
ABSL_FLAG(std::string, split, "train", "Split name stored in the file (train, valid, test, ...).");
ABSL_FLAG(std::string, tokenizer_model, "", "Reuse this SentencePiece .model file.");
ABSL_FLAG(std::string, tokenizer_from, "",
          "Reuse the tokenizer inside this memtrain corpus (give valid/test the train file's).");
ABSL_FLAG(std::string, tokenizer_type, "bpe", "bpe | unigram (when training a tokenizer).");
ABSL_FLAG(int, vocab_size, 8000, "Vocabulary size when training a tokenizer.");
ABSL_FLAG(int64_t, tokenizer_sentences, 1000000, "Sentences sampled to train the tokenizer.");
ABSL_FLAG(int, threads, 0, "Encoding threads (0 = one per core).");
ABSL_FLAG(std::string, on_bad_record, "fail",
          "fail: stop at the first malformed record (file:line reported); skip: count and go on.");
ABSL_FLAG(std::string, wmt_escaping, "auto", "wmt16: auto | escaped | plain (Moses escapes).");
ABSL_FLAG(memtrain::data::WmtDirection, wmt_direction, {},
          "wmt16 hub files ({\"translation\": {...}}): SOURCE-TARGET languages.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the demo generator and the tokenizer's sampling.");
ABSL_FLAG(int64_t, demo_documents, 2000, "demo: documents to generate.");
ABSL_FLAG(int, demo_facts, 4, "demo: facts stated and asked for per document.");
ABSL_FLAG(int64_t, demo_distance_words, 1000, "demo: filler words between facts and questions.");
ABSL_FLAG(bool, demo_recall, false,
          "demo: end each document by repeating its facts line (every name long-range) instead "
          "of asking questions.");
ABSL_FLAG(memtrain::data::CodeDocument, code_document, memtrain::data::CodeDocument::kFile,
          "code: file (a document per source file) | package (per top-level entry of an input "
          "directory, its files concatenated).");
ABSL_FLAG(std::vector<std::string>, code_extensions, {".py"},
          "code: comma-separated file name endings to read.");
ABSL_FLAG(std::vector<std::string>, code_packages, {},
          "code: top-level entries of the input directories to read (e.g. email,json,os.py); "
          "empty: all.");
ABSL_FLAG(int64_t, code_max_file_bytes, int64_t{1} << 20,
          "code: larger files are left out (counted).");
ABSL_FLAG(int64_t, code_min_document_bytes, 0, "code: shorter documents are left out (counted).");
ABSL_FLAG(bool, progress, true, "Show progress (a bar on a terminal, lines otherwise).");
ABSL_FLAG(bool, encode_stdin, false,
          "For memtrain-generate, which links no SentencePiece: read length-prefixed texts from "
          "standard input and write their token ids to standard output, with the tokenizer of "
          "--tokenizer_from or --tokenizer_model (data/text_inputs.h). No corpus is written.");
ABSL_FLAG(std::string, stats_json, "",
          "Also write what was done (records, tokens, input bytes, seconds) to this JSON file.");

namespace memtrain::data {
namespace {

absl::StatusOr<PrepareOptions> OptionsFromFlags() {
  PrepareOptions options;
  auto corpus = ParseCorpus(absl::GetFlag(FLAGS_corpus));
  if (!corpus.ok())
    return absl::InvalidArgumentError(absl::StrCat("--corpus: ", corpus.status().message()));
  options.reader.corpus = *corpus;
  options.reader.inputs = absl::GetFlag(FLAGS_inputs);
  if (options.reader.corpus != Corpus::kDemo && options.reader.inputs.empty()) {
    return absl::InvalidArgumentError("--inputs is required for this corpus");
  }
  const std::string bad = absl::GetFlag(FLAGS_on_bad_record);
  if (bad != "fail" && bad != "skip") {
    return absl::InvalidArgumentError(
        absl::StrCat("--on_bad_record must be fail or skip, got '", bad, "'"));
  }
  options.reader.on_bad_record = bad == "skip" ? BadRecordPolicy::kSkip : BadRecordPolicy::kFail;
  const std::string escaping = absl::GetFlag(FLAGS_wmt_escaping);
  if (escaping == "auto") {
    options.reader.wmt_escaping = MosesEscaping::kAuto;
  } else if (escaping == "escaped") {
    options.reader.wmt_escaping = MosesEscaping::kEscaped;
  } else if (escaping == "plain") {
    options.reader.wmt_escaping = MosesEscaping::kPlain;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--wmt_escaping must be auto, escaped or plain, got '", escaping, "'"));
  }
  options.reader.wmt_direction = absl::GetFlag(FLAGS_wmt_direction);
  options.reader.seed = absl::GetFlag(FLAGS_seed);
  options.reader.demo_documents = absl::GetFlag(FLAGS_demo_documents);
  options.reader.demo_facts_per_document = absl::GetFlag(FLAGS_demo_facts);
  options.reader.demo_distance_words = absl::GetFlag(FLAGS_demo_distance_words);
  options.reader.demo_recall = absl::GetFlag(FLAGS_demo_recall);
  options.reader.code_document = absl::GetFlag(FLAGS_code_document);
  options.reader.code_extensions = absl::GetFlag(FLAGS_code_extensions);
  options.reader.code_packages = absl::GetFlag(FLAGS_code_packages);
  options.reader.code_max_file_bytes = absl::GetFlag(FLAGS_code_max_file_bytes);
  options.reader.code_min_document_bytes = absl::GetFlag(FLAGS_code_min_document_bytes);
  options.output = absl::GetFlag(FLAGS_output);
  if (options.output.empty()) return absl::InvalidArgumentError("--output is required");
  options.split = absl::GetFlag(FLAGS_split);
  options.tokenizer_model_path = absl::GetFlag(FLAGS_tokenizer_model);
  options.tokenizer_from_corpus = absl::GetFlag(FLAGS_tokenizer_from);
  options.train.model_type = absl::GetFlag(FLAGS_tokenizer_type);
  options.train.vocab_size = absl::GetFlag(FLAGS_vocab_size);
  if (options.train.vocab_size < 300) {
    return absl::InvalidArgumentError(
        absl::StrCat("--vocab_size must be at least 300 (256 byte pieces + specials), got ",
                     options.train.vocab_size));
  }
  options.train.max_sentences = absl::GetFlag(FLAGS_tokenizer_sentences);
  options.train.seed = absl::GetFlag(FLAGS_seed);
  const int threads = absl::GetFlag(FLAGS_threads);
  options.threads =
      threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  options.train.num_threads = options.threads;
  options.show_progress = absl::GetFlag(FLAGS_progress);
  options.options_json =
      nlohmann::json{{"corpus", absl::GetFlag(FLAGS_corpus)},
                     {"inputs", options.reader.inputs},
                     {"split", options.split},
                     {"tokenizer_model", options.tokenizer_model_path},
                     {"tokenizer_from", options.tokenizer_from_corpus},
                     {"tokenizer_type", options.train.model_type},
                     {"vocab_size", options.train.vocab_size},
                     {"on_bad_record", bad},
                     {"wmt_escaping", escaping},
                     {"wmt_direction", AbslUnparseFlag(options.reader.wmt_direction)},
                     {"seed", options.reader.seed},
                     {"demo_documents", options.reader.demo_documents},
                     {"demo_facts", options.reader.demo_facts_per_document},
                     {"demo_distance_words", options.reader.demo_distance_words},
                     {"code_document", AbslUnparseFlag(options.reader.code_document)},
                     {"code_extensions", options.reader.code_extensions},
                     {"code_packages", options.reader.code_packages},
                     {"code_max_file_bytes", options.reader.code_max_file_bytes},
                     {"code_min_document_bytes", options.reader.code_min_document_bytes}}
          .dump();
  return options;
}

int Main() {
  if (absl::GetFlag(FLAGS_encode_stdin)) {
    PrepareOptions options;
    options.tokenizer_model_path = absl::GetFlag(FLAGS_tokenizer_model);
    options.tokenizer_from_corpus = absl::GetFlag(FLAGS_tokenizer_from);
    const absl::Status served = ServeEncoding(options, STDIN_FILENO, STDOUT_FILENO);
    LOG_IF(ERROR, !served.ok()) << "[prepare] --encode_stdin: " << served;
    return served.ok() ? 0 : 1;
  }
  absl::StatusOr<PrepareOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    LOG(ERROR) << "[prepare] " << options.status().message();
    return 2;
  }
  absl::StatusOr<PrepareResult> result = Prepare(*options);
  if (!result.ok()) {
    LOG(ERROR) << "[prepare] failed, nothing written to " << options->output << ": "
               << result.status();
    return 1;
  }
  const CorpusHeader& h = result->header;
  LOG(INFO) << "[prepare] wrote " << options->output << ": " << h.num_records
            << (h.task == "lm" ? " documents, " : " examples, ") << h.num_source_tokens
            << " source + " << h.num_target_tokens << " target tokens; skipped "
            << h.malformed_skipped << " malformed and " << h.empty_skipped << " empty records; "
            << result->reader.bytes_read << " input bytes in " << result->seconds << " s";
  if (options->reader.corpus == Corpus::kCode) {
    LOG(INFO) << "[prepare] code: left out " << result->reader.files_not_utf8
              << " files that are not UTF-8, " << result->reader.files_too_large
              << " files over --code_max_file_bytes and " << result->reader.short_skipped
              << " documents under --code_min_document_bytes";
  }
  const std::string stats_path = absl::GetFlag(FLAGS_stats_json);
  if (!stats_path.empty()) {
    std::ofstream(stats_path) << nlohmann::json{{"records", h.num_records},
                                                {"source_tokens", h.num_source_tokens},
                                                {"target_tokens", h.num_target_tokens},
                                                {"input_bytes", result->reader.bytes_read},
                                                {"files_not_utf8", result->reader.files_not_utf8},
                                                {"files_too_large", result->reader.files_too_large},
                                                {"short_skipped", result->reader.short_skipped},
                                                {"seconds", result->seconds},
                                                {"tokenizer_training_seconds",
                                                 result->train_seconds}}
                                     .dump(2)
                              << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace memtrain::data

int main(int argc, char** argv) {
  memtrain::InitBinary(argc, argv,
                       "Turns a raw corpus into a memtrain HDF5 corpus (docs/DATA.md).\n"
                       "  memtrain-prepare --corpus=wikitext --inputs=wiki.valid.tokens "
                       "--split=valid --output=wiki.valid.h5");
  return memtrain::RunBinaryWithExitCode("[prepare]", [] { return memtrain::data::Main(); });
}
