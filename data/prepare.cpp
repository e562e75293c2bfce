#include "data/prepare.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/progress.h"
#include "common/status_macros.h"
#include "data/code_corpus.h"
#include "data/text_inputs.h"
#include "glog/logging.h"

namespace memtrain::data {
namespace {

// Records encoded together: large enough to keep the threads busy, small
// enough that memory stays flat.
constexpr size_t kBatchRecords = 512;

struct EncodedRecord {
  std::vector<int32_t> source;
  std::vector<uint8_t> long_range;
  std::vector<int32_t> target;
  std::string id;
};

void EncodeSegments(const Tokenizer& tokenizer, const std::vector<TextSegment>& segments,
                    std::vector<int32_t>* ids, std::vector<uint8_t>* long_range) {
  std::vector<std::vector<int32_t>> segment_ids;
  for (const TextSegment& segment : segments) segment_ids.push_back(tokenizer.Encode(segment.text));
  AppendSegmentIds(segments, segment_ids, tokenizer.sep_id(), tokenizer.eos_id(), ids, long_range);
}

EncodedRecord Encode(const Tokenizer& tokenizer, const Record& record, bool seq2seq) {
  EncodedRecord encoded;
  EncodeSegments(tokenizer, record.source, &encoded.source, &encoded.long_range);
  if (seq2seq) EncodeSegments(tokenizer, record.target, &encoded.target, nullptr);
  encoded.id = record.id;
  return encoded;
}

// Encodes `records` on `threads` threads, keeping their order.
std::vector<EncodedRecord> EncodeBatch(const Tokenizer& tokenizer,
                                       const std::vector<Record>& records, bool seq2seq,
                                       int threads) {
  std::vector<EncodedRecord> encoded(records.size());
  const int workers = std::max(1, std::min<int>(threads, static_cast<int>(records.size())));
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      for (size_t i = static_cast<size_t>(w); i < records.size();
           i += static_cast<size_t>(workers)) {
        encoded[i] = Encode(tokenizer, records[i], seq2seq);
      }
    });
  }
  for (std::thread& thread : pool) thread.join();
  return encoded;
}

absl::StatusOr<std::string> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the tokenizer model"));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// The tokenizer --tokenizer_from or --tokenizer_model names (one of them is set).
absl::StatusOr<std::string> ReusedTokenizerBytes(const PrepareOptions& options,
                                                 std::string* model_type) {
  if (!options.tokenizer_from_corpus.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<CorpusFile> other,
                              CorpusFile::Open(options.tokenizer_from_corpus, {}));
    *model_type = other->tokenizer().model_type;
    LOG(INFO) << "[prepare] tokenizer from " << options.tokenizer_from_corpus << " (sha256 "
              << other->tokenizer().sha256.substr(0, 16) << ")";
    return other->tokenizer().model_bytes;
  }
  *model_type = "external";
  return ReadFileBytes(options.tokenizer_model_path);
}

// A code input is a directory: one InputFile for it, whose checksum covers
// which files were read and what each held, so the provenance stays one entry
// per input however many files a tree has.
absl::StatusOr<std::vector<InputFile>> DescribeCodeInputs(const ReaderOptions& options) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<CodeFile> files, ListCodeFiles(options));
  std::vector<InputFile> inputs;
  std::vector<std::string> manifests(options.inputs.size());
  for (const std::string& path : options.inputs) inputs.push_back(InputFile{path, 0, ""});
  for (const CodeFile& file : files) {
    MEMTRAIN_ASSIGN_OR_RETURN(InputFile described, DescribeInputFile(file.path));
    inputs[file.input].bytes += described.bytes;
    absl::StrAppend(&manifests[file.input], file.relative, "\t", described.sha256, "\n");
  }
  for (size_t i = 0; i < inputs.size(); ++i) inputs[i].sha256 = Sha256Hex(manifests[i]);
  return inputs;
}

int64_t TotalWork(const PrepareOptions& options, const std::vector<InputFile>& inputs) {
  if (options.reader.corpus == Corpus::kDemo) return options.reader.demo_documents;
  int64_t total = 0;
  for (const InputFile& input : inputs) total += input.bytes;
  return total;
}

int64_t WorkDone(const PrepareOptions& options, const ReaderStats& stats) {
  return options.reader.corpus == Corpus::kDemo ? stats.records : stats.bytes_read;
}

// Pass 1 when no model is given: SentencePiece learns from every line of
// every segment, source and target alike (one joint vocabulary).
absl::StatusOr<std::string> TrainModel(const PrepareOptions& options, int64_t total_work) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<CorpusReader> reader, OpenCorpusReader(options.reader));
  ProgressReporter progress("[prepare] read for tokenizer training", total_work,
                            options.reader.corpus == Corpus::kDemo
                                ? ProgressReporter::Unit::kItems
                                : ProgressReporter::Unit::kBytes);
  absl::Status read_status = absl::OkStatus();
  std::vector<std::string> pending;  // lines of the current record, consumed back to front
  const SentenceSource sentences = [&](std::string* sentence) {
    while (pending.empty()) {
      absl::StatusOr<std::optional<Record>> record = reader->Next();
      if (!record.ok()) {
        read_status = record.status();
        return false;
      }
      if (!record->has_value()) return false;
      if (options.show_progress) progress.Update(WorkDone(options, reader->stats()));
      for (const std::vector<TextSegment>* side : {&(*record)->source, &(*record)->target}) {
        for (const TextSegment& segment : *side) {
          for (absl::string_view line :
               absl::StrSplit(segment.text, '\n', absl::SkipWhitespace())) {
            pending.emplace_back(line);
          }
        }
      }
      std::reverse(pending.begin(), pending.end());
    }
    *sentence = std::move(pending.back());
    pending.pop_back();
    return true;
  };
  TokenizerTrainOptions train = options.train;
  if (options.reader.corpus == Corpus::kCode) train.whitespace_only_pieces = true;
  std::string model_bytes, error;
  const bool trained = Tokenizer::Train(sentences, train, &model_bytes, &error);
  if (options.show_progress) progress.Finish();
  MEMTRAIN_RETURN_IF_ERROR(read_status);
  if (!trained) return absl::InternalError(error);
  return model_bytes;
}

}  // namespace

TokenizerInfo DescribeTokenizer(const Tokenizer& tokenizer, const std::string& model_bytes,
                                const std::string& model_type) {
  TokenizerInfo info;
  info.model_bytes = model_bytes;
  info.sha256 = Sha256Hex(model_bytes);
  info.model_type = model_type;
  info.vocab_size = tokenizer.vocab_size();
  info.pad_id = tokenizer.pad_id();
  info.unk_id = tokenizer.unk_id();
  info.bos_id = tokenizer.bos_id();
  info.eos_id = tokenizer.eos_id();
  info.sep_id = tokenizer.sep_id();
  for (int32_t id = 0; id < info.vocab_size; ++id) info.pieces.push_back(tokenizer.IdToPiece(id));
  return info;
}

absl::StatusOr<PrepareResult> Prepare(const PrepareOptions& options) {
  const absl::Time start = absl::Now();
  if (options.output.empty()) return absl::InvalidArgumentError("--output is required");
  if (!options.tokenizer_model_path.empty() && !options.tokenizer_from_corpus.empty()) {
    return absl::InvalidArgumentError(
        "--tokenizer_model and --tokenizer_from are alternatives; give at most one");
  }
  const bool seq2seq = InfoOf(TaskOf(options.reader.corpus)).seq2seq;
  const std::string task = TaskName(TaskOf(options.reader.corpus));

  std::vector<InputFile> inputs;
  if (options.reader.corpus == Corpus::kCode) {
    MEMTRAIN_ASSIGN_OR_RETURN(inputs, DescribeCodeInputs(options.reader));
  } else {
    for (const std::string& path : options.reader.inputs) {
      MEMTRAIN_ASSIGN_OR_RETURN(InputFile input, DescribeInputFile(path));
      inputs.push_back(input);
    }
  }
  const int64_t total_work = TotalWork(options, inputs);

  // The tokenizer.
  PrepareResult result;
  std::string model_bytes;
  std::string model_type = options.train.model_type;
  if (!options.tokenizer_from_corpus.empty() || !options.tokenizer_model_path.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(model_bytes, ReusedTokenizerBytes(options, &model_type));
  } else {
    const absl::Time train_start = absl::Now();
    LOG(INFO) << "[prepare] training a " << options.train.model_type << " tokenizer, vocabulary "
              << options.train.vocab_size;
    MEMTRAIN_ASSIGN_OR_RETURN(model_bytes, TrainModel(options, total_work));
    result.train_seconds = absl::ToDoubleSeconds(absl::Now() - train_start);
  }
  std::string error;
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::Load(model_bytes, &error);
  if (tokenizer == nullptr) return absl::InvalidArgumentError(error);
  if (tokenizer->sep_id() < 0 && TaskOf(options.reader.corpus) == Task::kQuestionAnswering) {
    return absl::FailedPreconditionError(
        "the tokenizer model has no <sep> piece, which QA examples need; train one with "
        "memtrain-prepare");
  }
  const TokenizerInfo info = DescribeTokenizer(*tokenizer, model_bytes, model_type);

  // Pass 2: encode and write.
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<CorpusReader> reader, OpenCorpusReader(options.reader));
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<CorpusWriter> writer,
                            CorpusWriter::Create(options.output, task, info));
  ProgressReporter progress("[prepare] encode", total_work,
                            options.reader.corpus == Corpus::kDemo
                                ? ProgressReporter::Unit::kItems
                                : ProgressReporter::Unit::kBytes);
  std::vector<Record> batch;
  for (bool more = true; more;) {
    MEMTRAIN_ASSIGN_OR_RETURN(std::optional<Record> record, reader->Next());
    more = record.has_value();
    if (more) batch.push_back(*std::move(record));
    if (batch.size() == kBatchRecords || (!more && !batch.empty())) {
      for (const EncodedRecord& encoded :
           EncodeBatch(*tokenizer, batch, seq2seq, options.threads)) {
        MEMTRAIN_RETURN_IF_ERROR(
            writer->Append(encoded.source, encoded.long_range, encoded.target, encoded.id));
      }
      batch.clear();
      if (options.show_progress) progress.Update(WorkDone(options, reader->stats()));
    }
  }
  if (options.show_progress) progress.Finish();

  CorpusHeader header;
  header.corpus = CorpusName(options.reader.corpus);
  header.split = options.split;
  header.task = task;
  header.malformed_skipped = reader->stats().malformed_skipped;
  header.empty_skipped = reader->stats().empty_skipped;
  header.inputs = inputs;
  header.options_json = options.options_json;
  header.created_by = "memtrain-prepare (memtrain 0.1.0)";
  MEMTRAIN_RETURN_IF_ERROR(writer->Finish(header));

  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<CorpusFile> written,
                            CorpusFile::Open(options.output, {}));
  result.header = written->header();
  result.reader = reader->stats();
  result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return result;
}

absl::Status ServeEncoding(const PrepareOptions& options, int in_fd, int out_fd) {
  if (options.tokenizer_from_corpus.empty() == options.tokenizer_model_path.empty()) {
    return absl::InvalidArgumentError(
        "--encode_stdin needs the tokenizer: --tokenizer_from or --tokenizer_model");
  }
  std::string model_type;
  MEMTRAIN_ASSIGN_OR_RETURN(const std::string model_bytes,
                            ReusedTokenizerBytes(options, &model_type));
  std::string error;
  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::Load(model_bytes, &error);
  if (tokenizer == nullptr) return absl::InvalidArgumentError(error);
  return ServeEncodeRequests(in_fd, out_fd,
                             [&](const std::string& text) { return tokenizer->Encode(text); });
}

}  // namespace memtrain::data
