#include "tests/trainer/toy_corpus.h"

#include <unistd.h>

#include <filesystem>
#include <random>
#include <stdexcept>
#include <vector>

#include "data/corpus_file.h"

namespace memtrain::trainer::testing {
namespace {

constexpr int32_t kEos = 3;
constexpr int32_t kFirstWord = 5;  // after pad, unk, bos, eos, sep

data::TokenizerInfo ToyTokenizer() {
  data::TokenizerInfo info;
  info.model_bytes = "toy";
  info.sha256 = data::Sha256Hex(info.model_bytes);
  info.model_type = "toy";
  info.vocab_size = kToyVocab;
  for (int32_t id = 0; id < kToyVocab; ++id) info.pieces.push_back("\u2581w" + std::to_string(id));
  return info;
}

void Check(const absl::Status& status) {
  if (!status.ok()) throw std::runtime_error(status.ToString());
}

void Finish(data::CorpusWriter& writer, const std::string& task) {
  data::CorpusHeader header;
  header.corpus = "demo";
  header.split = "train";
  header.task = task;
  Check(writer.Finish(header));
}

}  // namespace

std::string ToyPath(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("memtrain_trainer_test_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

void WriteToyLm(const std::string& path, int documents, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::uniform_int_distribution<int32_t> word(kFirstWord, kToyVocab - 1);
  auto writer = data::CorpusWriter::Create(path, "lm", ToyTokenizer());
  Check(writer.status());
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  const int32_t words = kToyVocab - kFirstWord;
  for (int d = 0; d < documents; ++d) {
    std::vector<int32_t> tokens(20 + random() % 41);
    tokens[0] = word(random);
    for (size_t i = 1; i < tokens.size(); ++i) {
      const int32_t successor = kFirstWord + ((tokens[i - 1] - kFirstWord) * 7 + 3) % words;
      tokens[i] = coin(random) < 0.9 ? successor : word(random);
    }
    std::vector<uint8_t> long_range(tokens.size(), 0);
    for (size_t i = 4; i < tokens.size(); i += 9) long_range[i] = 1;
    tokens.push_back(kEos);
    long_range.push_back(0);
    Check((*writer)->Append(tokens, long_range, {}, ""));
  }
  Finish(**writer, "lm");
}

void WriteToyReversal(const std::string& path, int examples, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::uniform_int_distribution<int32_t> word(kFirstWord, kToyVocab - 1);
  auto writer = data::CorpusWriter::Create(path, "translation", ToyTokenizer());
  Check(writer.status());
  for (int e = 0; e < examples; ++e) {
    std::vector<int32_t> source(3 + random() % 6);
    for (int32_t& id : source) id = word(random);
    std::vector<int32_t> target(source.rbegin(), source.rend());
    source.push_back(kEos);  // as memtrain-prepare ends every sequence
    target.push_back(kEos);
    Check((*writer)->Append(source, {}, target, "pair" + std::to_string(e)));
  }
  Finish(**writer, "translation");
}

}  // namespace memtrain::trainer::testing
