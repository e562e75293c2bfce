#include "data/batch_source.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "data/corpus_file.h"
#include "nlohmann/json.hpp"

namespace memtrain::data {
namespace {

// The global order of an epoch: a Fisher-Yates shuffle driven by
// mt19937_64, whose output the C++ standard fixes, so every rank and every
// platform computes the same permutation (std::shuffle's is unspecified).
std::vector<int64_t> Permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 1);
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

absl::Status CheckRankOptions(const BatchSourceOptions& options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", options.rank, " is outside world size ", options.world_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> ParseState(const std::string& state, const std::string& kind,
                                          const CorpusFile& file) {
  const nlohmann::json json = nlohmann::json::parse(state, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) {
    return absl::InvalidArgumentError("data state is not a JSON object (damaged checkpoint?)");
  }
  if (json.value("kind", "") != kind) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data state is for a '", json.value("kind", "?"), "' source, this one is '", kind, "'"));
  }
  if (json.value("records", int64_t{-1}) != file.num_records() ||
      json.value("tokens", int64_t{-1}) != file.header().num_source_tokens) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data state was saved for another corpus (", json.value("records", int64_t{-1}),
        " records) than ", file.path(), " (", file.num_records(), " records)"));
  }
  return json;
}

// ---- lm streams ------------------------------------------------------------------

// One stream's position: the document it is in and the next input token.
struct StreamCursor {
  int64_t document = -1;  // -1: needs a document
  int64_t position = 0;
};

class LmStreamSource final : public BatchSource {
 public:
  LmStreamSource(std::unique_ptr<CorpusFile> file, BatchSourceOptions options)
      : file_(std::move(file)), options_(options) {}

  absl::Status Initialize() {
    MEMTRAIN_RETURN_IF_ERROR(CheckRankOptions(options_));
    if (options_.streams < 1 || options_.segment_length < 1) {
      return absl::InvalidArgumentError("streams and segment_length must be positive");
    }
    return StartEpoch(options_.epoch);
  }

  absl::Status StartEpoch(int64_t epoch) override {
    epoch_ = epoch;
    queue_ = Permutation(file_->num_records(), options_.seed, epoch);
    next_in_queue_ = 0;
    cursors_.assign(static_cast<size_t>(total_streams()), StreamCursor{});
    step_ = 0;
    steps_in_epoch_ = SimulateRemainingSteps();
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<Batch>> Next() override {
    if (step_ >= steps_in_epoch_) return std::optional<Batch>();
    const int64_t rows = options_.streams, width = options_.segment_length;
    const int32_t pad = file_->tokenizer().pad_id;
    Batch batch;
    batch.step = step_;
    batch.inputs = at::full({rows, width}, pad, at::kLong);
    batch.targets = at::full({rows, width}, pad, at::kLong);
    batch.loss_mask = at::zeros({rows, width}, at::kBool);
    batch.long_range = at::zeros({rows, width}, at::kBool);
    batch.new_document = at::zeros({rows}, at::kBool);
    batch.records.assign(static_cast<size_t>(rows), -1);
    batch.positions.assign(static_cast<size_t>(rows), -1);
    auto inputs = batch.inputs.accessor<int64_t, 2>();
    auto targets = batch.targets.accessor<int64_t, 2>();
    auto loss_mask = batch.loss_mask.accessor<bool, 2>();
    auto long_range = batch.long_range.accessor<bool, 2>();
    auto new_document = batch.new_document.accessor<bool, 1>();

    // All streams advance (the plan is global); this rank reads its own rows.
    const int64_t first = static_cast<int64_t>(options_.rank) * rows;
    for (int64_t g = 0; g < total_streams(); ++g) {
      Segment segment = Advance(g);
      if (g < first || g >= first + rows || segment.document < 0) continue;
      const int64_t row = g - first;
      batch.records[static_cast<size_t>(row)] = segment.document;
      batch.positions[static_cast<size_t>(row)] = segment.position;
      new_document[row] = segment.starts_document;
      const int64_t start = file_->offsets(Field::kSource)[segment.document] + segment.position;
      MEMTRAIN_ASSIGN_OR_RETURN(std::vector<int32_t> tokens,
                                file_->ReadTokens(Field::kSource, start, segment.count + 1));
      std::vector<uint8_t> flags;
      if (file_->header().has_long_range) {
        MEMTRAIN_ASSIGN_OR_RETURN(flags, file_->ReadLongRange(start, segment.count + 1));
      }
      for (int64_t i = 0; i < segment.count; ++i) {
        inputs[row][i] = tokens[static_cast<size_t>(i)];
        targets[row][i] = tokens[static_cast<size_t>(i + 1)];
        loss_mask[row][i] = true;
        long_range[row][i] =
            (!flags.empty() && flags[static_cast<size_t>(i + 1)] != 0) ||
            (options_.long_range_from > 0 && segment.position + i + 1 >= options_.long_range_from);
      }
      batch.loss_tokens += segment.count;
    }
    ++step_;
    return std::optional<Batch>(std::move(batch));
  }

  int64_t epoch() const override { return epoch_; }
  int64_t steps_in_epoch() const override { return steps_in_epoch_; }
  int64_t step() const override { return step_; }

  std::string SaveState() const override {
    nlohmann::json cursors = nlohmann::json::array();
    for (const StreamCursor& cursor : cursors_)
      cursors.push_back({cursor.document, cursor.position});
    return nlohmann::json{{"kind", "lm"},
                          {"records", file_->num_records()},
                          {"tokens", file_->header().num_source_tokens},
                          {"seed", options_.seed},
                          {"epoch", epoch_},
                          {"step", step_},
                          {"steps_in_epoch", steps_in_epoch_},
                          {"segment_length", options_.segment_length},
                          {"queue_position", next_in_queue_},
                          {"cursors", cursors},
                          {"carry", carry_to_json()}}
        .dump();
  }

  absl::Status LoadState(const std::string& state) override {
    MEMTRAIN_ASSIGN_OR_RETURN(nlohmann::json json, ParseState(state, "lm", *file_));
    if (json.value("segment_length", -1) != options_.segment_length ||
        json.value("seed", uint64_t{0}) != options_.seed) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data state was saved with segment_length ", json.value("segment_length", -1),
          " and seed ", json.value("seed", uint64_t{0}), "; this source has ",
          options_.segment_length, " and ", options_.seed));
    }
    MEMTRAIN_RETURN_IF_ERROR(StartEpoch(json.value("epoch", int64_t{0})));
    next_in_queue_ = json.value("queue_position", int64_t{0});
    carry_.clear();
    for (const auto& entry : json.value("carry", nlohmann::json::array())) {
      carry_.push_back({entry[0].get<int64_t>(), entry[1].get<int64_t>()});
    }
    std::vector<StreamCursor> saved;
    for (const auto& entry : json.value("cursors", nlohmann::json::array())) {
      saved.push_back({entry[0].get<int64_t>(), entry[1].get<int64_t>()});
    }
    const int64_t done = json.value("step", int64_t{0});
    if (static_cast<int64_t>(saved.size()) == total_streams()) {
      // Same number of streams: continue exactly.
      cursors_ = saved;
      step_ = done;
      steps_in_epoch_ = done + SimulateRemainingSteps();
      return absl::OkStatus();
    }
    // Another world size: unfinished documents move, in stream order and from
    // where they stopped, to the front of the queue of the new streams.
    std::deque<StreamCursor> moved;
    for (const StreamCursor& cursor : saved) {
      if (cursor.document >= 0 && !Finished(cursor)) moved.push_back(cursor);
    }
    moved.insert(moved.end(), carry_.begin(), carry_.end());
    carry_ = std::move(moved);
    cursors_.assign(static_cast<size_t>(total_streams()), StreamCursor{});
    step_ = done;
    steps_in_epoch_ = done + SimulateRemainingSteps();
    return absl::OkStatus();
  }

 private:
  struct Segment {
    int64_t document = -1;
    int64_t position = 0;
    int64_t count = 0;
    bool starts_document = false;
  };

  int64_t total_streams() const {
    return static_cast<int64_t>(options_.world_size) * options_.streams;
  }

  // Input/target pairs a document of n tokens provides: n - 1.
  int64_t Pairs(int64_t document) const {
    return file_->record_length(Field::kSource, document) - 1;
  }
  bool Finished(const StreamCursor& cursor) const {
    return cursor.document < 0 || cursor.position >= Pairs(cursor.document);
  }

  // Gives stream `g` its next segment (or none when the epoch ran dry) and
  // moves its cursor past it. Documents with fewer than 2 tokens yield
  // nothing and are passed over.
  Segment Advance(int64_t g) {
    StreamCursor& cursor = cursors_[static_cast<size_t>(g)];
    bool starts = false;
    while (Finished(cursor)) {
      if (!carry_.empty()) {
        cursor = carry_.front();
        carry_.pop_front();
        starts = cursor.position == 0;
      } else if (next_in_queue_ < static_cast<int64_t>(queue_.size())) {
        cursor = {queue_[static_cast<size_t>(next_in_queue_++)], 0};
        starts = true;
      } else {
        cursor = StreamCursor{};
        return Segment{};
      }
    }
    Segment segment{
        cursor.document, cursor.position,
        std::min<int64_t>(options_.segment_length, Pairs(cursor.document) - cursor.position),
        starts || cursor.position == 0};
    cursor.position += options_.segment_length;
    return segment;
  }

  // Steps until every document is consumed, simulated on a copy of the state.
  int64_t SimulateRemainingSteps() {
    const std::vector<StreamCursor> cursors = cursors_;
    const std::deque<StreamCursor> carry = carry_;
    const int64_t next = next_in_queue_;
    int64_t steps = 0;
    for (;;) {
      bool any = false;
      for (int64_t g = 0; g < total_streams(); ++g) any = Advance(g).document >= 0 || any;
      if (!any) break;
      ++steps;
    }
    cursors_ = cursors;
    carry_ = carry;
    next_in_queue_ = next;
    return steps;
  }

  nlohmann::json carry_to_json() const {
    nlohmann::json carry = nlohmann::json::array();
    for (const StreamCursor& cursor : carry_) carry.push_back({cursor.document, cursor.position});
    return carry;
  }

  std::unique_ptr<CorpusFile> file_;
  const BatchSourceOptions options_;
  int64_t epoch_ = 0;
  std::vector<int64_t> queue_;  // this epoch's document order
  int64_t next_in_queue_ = 0;
  std::deque<StreamCursor> carry_;     // documents handed over by a resize
  std::vector<StreamCursor> cursors_;  // one per global stream (rank-major)
  int64_t step_ = 0;
  int64_t steps_in_epoch_ = 0;
};

// ---- seq2seq batches --------------------------------------------------------------

class Seq2SeqBatchSource final : public BatchSource {
 public:
  Seq2SeqBatchSource(std::unique_ptr<CorpusFile> file, BatchSourceOptions options)
      : file_(std::move(file)), options_(options) {}

  absl::Status Initialize() {
    MEMTRAIN_RETURN_IF_ERROR(CheckRankOptions(options_));
    if (options_.max_source_length < 2 || options_.max_target_length < 2) {
      return absl::InvalidArgumentError("max_source_length and max_target_length must be >= 2");
    }
    if (options_.prefix_lm && file_->tokenizer().sep_id < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(file_->path(),
                       "'s tokenizer has no <sep>, which a decoder-only model needs between "
                       "source and target; prepare the corpus with a memtrain tokenizer"));
    }
    if (options_.max_tokens < Length(options_.max_source_length, options_.max_target_length)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "max_tokens ", options_.max_tokens, " cannot hold one example of the maximum length ",
          Length(options_.max_source_length, options_.max_target_length),
          options_.prefix_lm ? " (decoder-only: max_source_length + max_target_length)" : ""));
    }
    return StartEpoch(options_.epoch);
  }

  absl::Status StartEpoch(int64_t epoch) override {
    epoch_ = epoch;
    next_batch_ = 0;
    step_ = 0;
    skipped_ = 0;
    // fairseq's recipe: shuffle, sort by length (stable, so ties keep the
    // shuffled order), cut into batches under the padded-token budget, then
    // shuffle the batches.
    std::vector<int64_t> order;
    for (int64_t record : Permutation(file_->num_records(), options_.seed, epoch)) {
      if (options_.truncation == TruncationPolicy::kSkip &&
          (SourceLength(record, false) > options_.max_source_length ||
           TargetLength(record, false) > options_.max_target_length)) {
        ++skipped_;
        continue;
      }
      order.push_back(record);
    }
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return std::make_pair(TargetLength(a, true), SourceLength(a, true)) <
             std::make_pair(TargetLength(b, true), SourceLength(b, true));
    });
    batches_.clear();
    std::vector<int64_t> current;
    int64_t longest = 0;
    for (int64_t record : order) {
      const int64_t length = Length(SourceLength(record, true), TargetLength(record, true));
      const int64_t longest_with = std::max(longest, length);
      if (!current.empty() &&
          longest_with * static_cast<int64_t>(current.size() + 1) > options_.max_tokens) {
        batches_.push_back(std::move(current));
        current.clear();
        longest = 0;
      }
      current.push_back(record);
      longest = std::max(longest, length);
    }
    if (!current.empty()) batches_.push_back(std::move(current));
    const std::vector<int64_t> batch_order =
        Permutation(static_cast<int64_t>(batches_.size()), options_.seed ^ 0x5eedULL, epoch);
    std::vector<std::vector<int64_t>> shuffled;
    for (int64_t index : batch_order)
      shuffled.push_back(std::move(batches_[static_cast<size_t>(index)]));
    batches_ = std::move(shuffled);
    steps_in_epoch_ = RemainingSteps();
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<Batch>> Next() override {
    if (step_ >= steps_in_epoch_) return std::optional<Batch>();
    const int64_t index = next_batch_ + options_.rank;
    next_batch_ += options_.world_size;
    Batch batch;
    batch.step = step_++;
    const std::vector<int64_t> empty;
    const std::vector<int64_t>& records = index < static_cast<int64_t>(batches_.size())
                                              ? batches_[static_cast<size_t>(index)]
                                              : empty;
    MEMTRAIN_RETURN_IF_ERROR(Fill(records, &batch));
    return std::optional<Batch>(std::move(batch));
  }

  int64_t epoch() const override { return epoch_; }
  int64_t steps_in_epoch() const override { return steps_in_epoch_; }
  int64_t step() const override { return step_; }

  std::string SaveState() const override {
    return nlohmann::json{{"kind", "seq2seq"},
                          {"records", file_->num_records()},
                          {"tokens", file_->header().num_source_tokens},
                          {"seed", options_.seed},
                          {"max_tokens", options_.max_tokens},
                          {"epoch", epoch_},
                          {"step", step_},
                          {"next_batch", next_batch_}}
        .dump();
  }

  absl::Status LoadState(const std::string& state) override {
    MEMTRAIN_ASSIGN_OR_RETURN(nlohmann::json json, ParseState(state, "seq2seq", *file_));
    if (json.value("max_tokens", int64_t{-1}) != options_.max_tokens ||
        json.value("seed", uint64_t{0}) != options_.seed) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data state was saved with max_tokens ", json.value("max_tokens", int64_t{-1}),
          " and seed ", json.value("seed", uint64_t{0}), "; this source has ", options_.max_tokens,
          " and ", options_.seed));
    }
    MEMTRAIN_RETURN_IF_ERROR(StartEpoch(json.value("epoch", int64_t{0})));
    next_batch_ = json.value("next_batch", int64_t{0});
    step_ = json.value("step", int64_t{0});
    steps_in_epoch_ = step_ + RemainingSteps();
    return absl::OkStatus();
  }

  int64_t skipped() const { return skipped_; }

 private:
  int64_t RemainingSteps() const {
    const int64_t left = static_cast<int64_t>(batches_.size()) - next_batch_;
    return left <= 0 ? 0 : (left + options_.world_size - 1) / options_.world_size;
  }
  // The padded width an example needs: the longer side, or for a prefix LM
  // the whole sequence (the source's eos becomes <sep>).
  int64_t Length(int64_t source, int64_t target) const {
    return options_.prefix_lm ? source + target : std::max(source, target);
  }
  int64_t SourceLength(int64_t record, bool truncated) const {
    const int64_t n = file_->record_length(Field::kSource, record);
    return truncated ? std::min(n, options_.max_source_length) : n;
  }
  int64_t TargetLength(int64_t record, bool truncated) const {
    const int64_t n = file_->record_length(Field::kTarget, record);
    return truncated ? std::min(n, options_.max_target_length) : n;
  }

  // Reads `records` and pads them into `batch`; truncation keeps the first
  // max-1 tokens and the final eos.
  absl::Status Fill(const std::vector<int64_t>& records, Batch* batch) {
    if (options_.prefix_lm) return FillPrefixLm(records, batch);
    const int64_t rows = static_cast<int64_t>(records.size());
    int64_t source_width = 0, target_width = 0;
    for (int64_t record : records) {
      source_width = std::max(source_width, SourceLength(record, true));
      target_width = std::max(target_width, TargetLength(record, true));
    }
    const TokenizerInfo& t = file_->tokenizer();
    batch->source = at::full({rows, source_width}, t.pad_id, at::kLong);
    batch->source_mask = at::zeros({rows, source_width}, at::kBool);
    batch->inputs = at::full({rows, target_width}, t.pad_id, at::kLong);
    batch->targets = at::full({rows, target_width}, t.pad_id, at::kLong);
    batch->loss_mask = at::zeros({rows, target_width}, at::kBool);
    batch->records = records;
    auto source = batch->source.accessor<int64_t, 2>();
    auto source_mask = batch->source_mask.accessor<bool, 2>();
    auto inputs = batch->inputs.accessor<int64_t, 2>();
    auto targets = batch->targets.accessor<int64_t, 2>();
    auto loss_mask = batch->loss_mask.accessor<bool, 2>();
    for (int64_t row = 0; row < rows; ++row) {
      MEMTRAIN_ASSIGN_OR_RETURN(auto pair, ReadTruncatedPair(records[static_cast<size_t>(row)]));
      const auto& [src, tgt] = pair;
      for (size_t i = 0; i < src.size(); ++i) {
        source[row][static_cast<int64_t>(i)] = src[i];
        source_mask[row][static_cast<int64_t>(i)] = true;
      }
      for (size_t i = 0; i < tgt.size(); ++i) {
        inputs[row][static_cast<int64_t>(i)] = i == 0 ? t.bos_id : tgt[i - 1];
        targets[row][static_cast<int64_t>(i)] = tgt[i];
        loss_mask[row][static_cast<int64_t>(i)] = true;
      }
      batch->loss_tokens += static_cast<int64_t>(tgt.size());
    }
    return absl::OkStatus();
  }

  // Fill for a decoder-only model: one sequence per record, the loss on the
  // target's tokens only (the source is context).
  absl::Status FillPrefixLm(const std::vector<int64_t>& records, Batch* batch) {
    const TokenizerInfo& t = file_->tokenizer();
    std::vector<std::vector<int32_t>> sequences;
    std::vector<int64_t> prompts;
    int64_t width = 0;
    for (int64_t record : records) {
      MEMTRAIN_ASSIGN_OR_RETURN(auto pair, ReadTruncatedPair(record));
      auto& [src, tgt] = pair;
      std::vector<int32_t> sequence = PrefixLmPrompt(std::move(src), t.sep_id, t.eos_id);
      prompts.push_back(static_cast<int64_t>(sequence.size()));
      sequence.insert(sequence.end(), tgt.begin(), tgt.end());
      width = std::max(width, static_cast<int64_t>(sequence.size()) - 1);
      batch->loss_tokens += static_cast<int64_t>(tgt.size());
      sequences.push_back(std::move(sequence));
    }
    const int64_t rows = static_cast<int64_t>(records.size());
    batch->inputs = at::full({rows, width}, t.pad_id, at::kLong);
    batch->targets = at::full({rows, width}, t.pad_id, at::kLong);
    batch->loss_mask = at::zeros({rows, width}, at::kBool);
    batch->records = records;
    auto inputs = batch->inputs.accessor<int64_t, 2>();
    auto targets = batch->targets.accessor<int64_t, 2>();
    auto loss_mask = batch->loss_mask.accessor<bool, 2>();
    for (int64_t row = 0; row < rows; ++row) {
      const std::vector<int32_t>& sequence = sequences[static_cast<size_t>(row)];
      for (int64_t i = 0; i + 1 < static_cast<int64_t>(sequence.size()); ++i) {
        inputs[row][i] = sequence[static_cast<size_t>(i)];
        targets[row][i] = sequence[static_cast<size_t>(i + 1)];
        loss_mask[row][i] = i + 1 >= prompts[static_cast<size_t>(row)];
      }
    }
    return absl::OkStatus();
  }

  // A record's source and target, each cut to its --max_*_length (ending in eos).
  absl::StatusOr<std::pair<std::vector<int32_t>, std::vector<int32_t>>> ReadTruncatedPair(
      int64_t record) {
    const int32_t eos = file_->tokenizer().eos_id;
    MEMTRAIN_ASSIGN_OR_RETURN(std::vector<int32_t> src, file_->ReadRecord(Field::kSource, record));
    MEMTRAIN_ASSIGN_OR_RETURN(std::vector<int32_t> tgt, file_->ReadRecord(Field::kTarget, record));
    Truncate(&src, options_.max_source_length, eos);
    Truncate(&tgt, options_.max_target_length, eos);
    return std::make_pair(std::move(src), std::move(tgt));
  }

  static void Truncate(std::vector<int32_t>* tokens, int64_t max_length, int32_t eos) {
    if (static_cast<int64_t>(tokens->size()) <= max_length) return;
    tokens->resize(static_cast<size_t>(max_length));
    tokens->back() = eos;
  }

  std::unique_ptr<CorpusFile> file_;
  const BatchSourceOptions options_;
  int64_t epoch_ = 0;
  std::vector<std::vector<int64_t>> batches_;  // this epoch's global batch list
  int64_t next_batch_ = 0;                     // index in batches_ of this step's rank-0 batch
  int64_t step_ = 0;
  int64_t steps_in_epoch_ = 0;
  int64_t skipped_ = 0;
};

// ---- prefetch ---------------------------------------------------------------------

class PrefetchingSource final : public BatchSource {
 public:
  PrefetchingSource(std::unique_ptr<BatchSource> inner, int depth)
      : inner_(std::move(inner)), depth_(std::max(depth, 1)) {
    delivered_state_ = inner_->SaveState();
    delivered_step_ = inner_->step();
    Start();
  }
  ~PrefetchingSource() override { Stop(); }

  absl::StatusOr<std::optional<Batch>> Next() override {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [&] { return !queue_.empty(); });
    Item& front = queue_.front();
    // An error or the end of the epoch stays at the front: the producer has
    // stopped, and every later call gets the same answer until StartEpoch or
    // LoadState.
    if (!front.batch.ok()) return front.batch.status();
    if (!front.batch->has_value()) return std::optional<Batch>();
    absl::StatusOr<std::optional<Batch>> batch = std::move(front.batch);
    delivered_state_ = std::move(front.state_after);
    delivered_step_ = front.step_after;
    queue_.pop_front();
    space_.notify_all();
    return batch;
  }

  absl::Status StartEpoch(int64_t epoch) override {
    Stop();
    absl::Status status = inner_->StartEpoch(epoch);
    delivered_state_ = inner_->SaveState();
    delivered_step_ = inner_->step();
    Start();
    return status;
  }
  int64_t epoch() const override { return inner_epoch_; }
  int64_t steps_in_epoch() const override { return inner_steps_; }
  int64_t step() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return delivered_step_;
  }
  std::string SaveState() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return delivered_state_;
  }
  absl::Status LoadState(const std::string& state) override {
    Stop();
    absl::Status status = inner_->LoadState(state);
    delivered_state_ = inner_->SaveState();
    delivered_step_ = inner_->step();
    Start();
    return status;
  }

 private:
  struct Item {
    absl::StatusOr<std::optional<Batch>> batch;
    std::string state_after;
    int64_t step_after = 0;
  };

  void Start() {
    inner_epoch_ = inner_->epoch();
    inner_steps_ = inner_->steps_in_epoch();
    stop_ = false;
    queue_.clear();
    thread_ = std::thread([this] { Produce(); });
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    space_.notify_all();
    if (thread_.joinable()) thread_.join();
    queue_.clear();
  }

  void Produce() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        space_.wait(lock, [&] { return stop_ || static_cast<int>(queue_.size()) < depth_; });
        if (stop_) return;
      }
      Item item{inner_->Next(), "", 0};
      const bool last = !item.batch.ok() || !item.batch->has_value();
      item.state_after = inner_->SaveState();
      item.step_after = inner_->step();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(item));
      }
      ready_.notify_all();
      if (last) return;  // an error or the end of the epoch: nothing more to fetch
    }
  }

  std::unique_ptr<BatchSource> inner_;  // used by the producer thread only while it runs
  const int depth_;
  mutable std::mutex mutex_;  // guards the queue, stop_ and the delivered state
  std::condition_variable ready_, space_;
  std::deque<Item> queue_;
  bool stop_ = false;
  std::string delivered_state_;
  int64_t delivered_step_ = 0;
  int64_t inner_epoch_ = 0, inner_steps_ = 0;  // read while the producer is stopped
  std::thread thread_;
};

}  // namespace

std::vector<int32_t> PrefixLmPrompt(std::vector<int32_t> source, int32_t sep, int32_t eos) {
  if (!source.empty() && source.back() == eos) source.pop_back();
  source.push_back(sep);
  return source;
}

absl::StatusOr<std::unique_ptr<BatchSource>> OpenBatchSource(const std::string& path,
                                                             const BatchSourceOptions& options) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<CorpusFile> file, CorpusFile::Open(path, {}));
  // The task decides the automatic cache size; no dataset has been read yet,
  // so the file takes it before its first read.
  if (options.chunk_cache_bytes > 0) {
    MEMTRAIN_RETURN_IF_ERROR(file->set_chunk_cache_bytes(options.chunk_cache_bytes));
  } else if (!file->is_seq2seq()) {
    constexpr int64_t kChunkBytes = int64_t{64} << 10;  // 16384 int32 tokens
    MEMTRAIN_RETURN_IF_ERROR(file->set_chunk_cache_bytes(
        std::max<int64_t>(int64_t{4} << 20, int64_t{4} * kChunkBytes * options.streams)));
  }
  if (file->is_seq2seq()) {
    auto source = std::make_unique<Seq2SeqBatchSource>(std::move(file), options);
    MEMTRAIN_RETURN_IF_ERROR(source->Initialize());
    return std::unique_ptr<BatchSource>(std::move(source));
  }
  auto source = std::make_unique<LmStreamSource>(std::move(file), options);
  MEMTRAIN_RETURN_IF_ERROR(source->Initialize());
  return std::unique_ptr<BatchSource>(std::move(source));
}

std::unique_ptr<BatchSource> Prefetch(std::unique_ptr<BatchSource> source, int depth) {
  return std::make_unique<PrefetchingSource>(std::move(source), depth);
}

}  // namespace memtrain::data
