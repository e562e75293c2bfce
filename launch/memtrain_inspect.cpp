// memtrain-inspect: what is in a memtrain HDF5 corpus, is it intact, and what
// does record N say.
//
//   memtrain-inspect wiki.valid.h5             # attributes, counts, full verification
//   memtrain-inspect wiki.valid.h5 --doc=3     # document/example 3 decoded to text
//
// Exit code: 0 when the file verifies, 1 when it is refused or damaged.
#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/binary.h"
#include "data/corpus_file.h"
#include "glog/logging.h"

ABSL_FLAG(int64_t, doc, -1, "Print this document (lm) or example (seq2seq), decoded.");
ABSL_FLAG(bool, verify, true,
          "Read the whole file and check it (ids in vocabulary, offsets, checksums).");

namespace memtrain::data {
namespace {

// Decoded text of ids, with long-range tokens between ⟦ and ⟧.
std::string DecodeMarked(const PieceDecoder& decoder, const std::vector<int32_t>& ids,
                         const std::vector<uint8_t>& long_range) {
  std::string text;
  size_t i = 0;
  while (i < ids.size()) {
    const bool marked = !long_range.empty() && long_range[i] != 0;
    size_t j = i;
    while (j < ids.size() && (!long_range.empty() && long_range[j] != 0) == marked) ++j;
    const std::string piece =
        decoder.Decode(std::vector<int32_t>(ids.begin() + i, ids.begin() + j));
    text += marked ? absl::StrCat("\u27e6", piece, "\u27e7") : piece;
    i = j;
  }
  return text;
}

int Main(const std::string& path) {
  auto opened = CorpusFile::Open(path, {});
  if (!opened.ok()) {
    std::cerr << "memtrain-inspect: " << opened.status().message() << "\n";
    return 1;
  }
  CorpusFile& file = **opened;
  const CorpusHeader& h = file.header();
  const TokenizerInfo& t = file.tokenizer();
  std::cout << path << ": memtrain corpus v" << kFormatVersion << "\n"
            << "  corpus " << h.corpus << ", split " << h.split << ", task " << h.task << "\n"
            << "  records " << h.num_records << ", source tokens " << h.num_source_tokens
            << ", target tokens " << h.num_target_tokens << ", long-range tokens "
            << (h.has_long_range ? "yes" : "no") << "\n"
            << "  skipped: " << h.malformed_skipped << " malformed, " << h.empty_skipped
            << " empty\n"
            << "  tokenizer " << t.model_type << ", vocabulary " << t.vocab_size << ", sha256 "
            << t.sha256 << " (pad " << t.pad_id << ", unk " << t.unk_id << ", bos " << t.bos_id
            << ", eos " << t.eos_id << ", sep " << t.sep_id << ")\n"
            << "  created " << h.created_at << " by " << h.created_by << "\n";
  for (const InputFile& input : h.inputs) {
    std::cout << "  input " << input.path << " (" << input.bytes << " bytes, sha256 "
              << input.sha256 << ")\n";
  }
  std::cout << "  options " << h.options_json << "\n";
  int exit_code = 0;
  if (absl::GetFlag(FLAGS_verify)) {
    const absl::Status status = file.Verify();
    std::cout << "  verify: " << (status.ok() ? std::string("OK") : std::string(status.message()))
              << "\n";
    if (!status.ok()) exit_code = 1;
  }
  const int64_t doc = absl::GetFlag(FLAGS_doc);
  if (doc >= 0) {
    const PieceDecoder decoder(t);
    auto source = file.ReadRecord(Field::kSource, doc);
    if (!source.ok()) {
      std::cerr << "memtrain-inspect: " << source.status().message() << "\n";
      return 1;
    }
    const int64_t start = file.offsets(Field::kSource)[doc];
    auto long_range = file.ReadLongRange(start, static_cast<int64_t>(source->size()));
    std::cout << "--- " << (file.is_seq2seq() ? "example " : "document ") << doc << " ("
              << source->size() << " tokens";
    if (file.is_seq2seq()) std::cout << ", id '" << file.ReadId(doc).value_or("?") << "'";
    std::cout << ")\n"
              << (file.is_seq2seq() ? "[source] " : "")
              << DecodeMarked(decoder, *source, long_range.value_or(std::vector<uint8_t>{}))
              << "\n";
    if (file.is_seq2seq()) {
      auto target = file.ReadRecord(Field::kTarget, doc);
      std::cout << "[target] " << (target.ok() ? decoder.Decode(*target) : std::string("?"))
                << "\n";
    }
  }
  return exit_code;
}

}  // namespace
}  // namespace memtrain::data

int main(int argc, char** argv) {
  std::vector<char*> args = memtrain::InitBinary(
      argc, argv,
      "Prints a memtrain HDF5 corpus's attributes and counts, verifies it, and decodes "
      "records.\n  memtrain-inspect FILE.h5 [--doc=N] [--verify=false]");
  if (args.size() != 2) {
    std::cerr << "usage: memtrain-inspect FILE.h5 [--doc=N] (see --help)\n";
    return 2;
  }
  return memtrain::RunBinaryWithExitCode("[inspect]",
                                         [&] { return memtrain::data::Main(args[1]); });
}
