#include "tests/data/synthetic_corpus.h"

#include <unistd.h>

#include <filesystem>
#include <stdexcept>

#include "data/corpus_file.h"

namespace memtrain::data::testing {
namespace {

TokenizerInfo SyntheticTokenizer() {
  TokenizerInfo info;
  info.model_bytes = "synthetic";
  info.sha256 = Sha256Hex(info.model_bytes);
  info.model_type = "synthetic";
  info.vocab_size = kVocabulary;
  for (int32_t id = 0; id < kVocabulary; ++id) info.pieces.push_back("t" + std::to_string(id));
  return info;
}

void Check(const absl::Status& status) {
  if (!status.ok()) throw std::runtime_error(status.ToString());
}

}  // namespace

std::string TempPath(const std::string& name) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("memtrain_test_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

void WriteLmCorpus(const std::string& path, const std::vector<int64_t>& lengths) {
  auto writer = CorpusWriter::Create(path, "lm", SyntheticTokenizer());
  Check(writer.status());
  int64_t position = 0;
  for (int64_t length : lengths) {
    std::vector<int32_t> tokens;
    std::vector<uint8_t> long_range;
    for (int64_t i = 0; i < length; ++i, ++position) {
      tokens.push_back(SourceToken(position));
      long_range.push_back(position % 7 == 0 ? 1 : 0);
    }
    Check((*writer)->Append(tokens, long_range, {}, ""));
  }
  CorpusHeader header;
  header.corpus = "demo";
  header.split = "test";
  header.task = "lm";
  Check((*writer)->Finish(header));
}

void WriteSeq2SeqCorpus(const std::string& path, const std::vector<int64_t>& source_lengths,
                        const std::vector<int64_t>& target_lengths) {
  auto writer = CorpusWriter::Create(path, "translation", SyntheticTokenizer());
  Check(writer.status());
  int64_t source_position = 0, target_position = 0;
  for (size_t r = 0; r < source_lengths.size(); ++r) {
    std::vector<int32_t> source, target;
    for (int64_t i = 0; i < source_lengths[r]; ++i)
      source.push_back(SourceToken(source_position++));
    for (int64_t i = 0; i < target_lengths[r]; ++i)
      target.push_back(TargetToken(target_position++));
    Check((*writer)->Append(source, {}, target, "ex" + std::to_string(r)));
  }
  CorpusHeader header;
  header.corpus = "wmt16";
  header.split = "test";
  header.task = "translation";
  Check((*writer)->Finish(header));
}

}  // namespace memtrain::data::testing
