// BatchSource on synthetic corpora whose token ids encode their position, so
// coverage ("every token of the epoch exactly once, over all ranks"), resume
// and resharding are checked exactly. Ranks are simulated in one process by
// opening one source per rank (the plan needs no communication); the real
// 2-rank MPI run is in batch_source_mpi_test.cpp.
#include "data/batch_source.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "data/corpus_file.h"
#include "tests/data/synthetic_corpus.h"

namespace memtrain::data {
namespace {

using ::testing::HasSubstr;
using testing::SourceToken;
using testing::TargetToken;

std::vector<int64_t> LmLengths() {
  std::vector<int64_t> lengths;
  for (int i = 0; i < 200; ++i) lengths.push_back(1 + (i * 37) % 250);  // includes length 1
  return lengths;
}

// Global source position of a synthetic token id (positions stay below the
// id range, so the map is one to one).
int64_t PositionOf(int64_t token) { return token - testing::kFirstId; }

class LmBatchSourceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    path_ = new std::string(testing::TempPath("lm.h5"));
    testing::WriteLmCorpus(*path_, LmLengths());
  }
  std::unique_ptr<BatchSource> Open(int rank, int world, int streams = 3, int length = 16) {
    BatchSourceOptions options;
    options.rank = rank;
    options.world_size = world;
    options.streams = streams;
    options.segment_length = length;
    options.seed = 7;
    auto source = OpenBatchSource(*path_, options);
    EXPECT_TRUE(source.ok()) << source.status();
    return *std::move(source);
  }
  // Adds every loss position of `batch` to `seen`, and checks that inputs are
  // the tokens just before their targets.
  static void Collect(const Batch& batch, std::map<int64_t, int>* seen) {
    auto targets = batch.targets.accessor<int64_t, 2>();
    auto inputs = batch.inputs.accessor<int64_t, 2>();
    auto mask = batch.loss_mask.accessor<bool, 2>();
    auto long_range = batch.long_range.accessor<bool, 2>();
    for (int64_t row = 0; row < batch.targets.size(0); ++row) {
      for (int64_t i = 0; i < batch.targets.size(1); ++i) {
        if (!mask[row][i]) continue;
        const int64_t position = PositionOf(targets[row][i]);
        ++(*seen)[position];
        ASSERT_EQ(inputs[row][i], SourceToken(position - 1));
        ASSERT_EQ(long_range[row][i], position % 7 == 0);
      }
    }
  }
  static std::map<int64_t, int> Expected() {
    std::map<int64_t, int> expected;
    int64_t start = 0;
    for (int64_t length : LmLengths()) {
      for (int64_t i = 1; i < length; ++i) expected[start + i] = 1;  // a first token is no target
      start += length;
    }
    return expected;
  }
  static std::string* path_;
};
std::string* LmBatchSourceTest::path_ = nullptr;

// memtrain-eval --long_range_from: the corpus's marks, and every target at
// least that many tokens into its document.
TEST_F(LmBatchSourceTest, LongRangeFromMarksTheTargetsFarIntoTheirDocument) {
  std::map<int64_t, int64_t> in_document;  // global position -> position in its document
  int64_t start = 0;
  for (int64_t length : LmLengths()) {
    for (int64_t i = 0; i < length; ++i) in_document[start + i] = i;
    start += length;
  }
  BatchSourceOptions options;
  options.streams = 3;
  options.segment_length = 16;
  options.long_range_from = 40;
  auto source = OpenBatchSource(*path_, options);
  ASSERT_TRUE(source.ok()) << source.status();
  int64_t far = 0, near = 0;
  while (true) {
    auto batch = (*source)->Next();
    ASSERT_TRUE(batch.ok()) << batch.status();
    if (!batch->has_value()) break;
    auto targets = (*batch)->targets.accessor<int64_t, 2>();
    auto mask = (*batch)->loss_mask.accessor<bool, 2>();
    auto long_range = (*batch)->long_range.accessor<bool, 2>();
    for (int64_t row = 0; row < 3; ++row) {
      for (int64_t i = 0; i < 16; ++i) {
        if (!mask[row][i]) continue;
        const int64_t position = PositionOf(targets[row][i]);
        const bool is_far = in_document.at(position) >= 40;
        ASSERT_EQ(long_range[row][i], position % 7 == 0 || is_far) << "position " << position;
        (is_far ? far : near) += 1;
      }
    }
  }
  EXPECT_GT(far, 1000);
  EXPECT_GT(near, 1000);
}

TEST_F(LmBatchSourceTest, RanksCoverEveryTokenExactlyOnceAndAgreeOnSteps) {
  std::map<int64_t, int> seen;
  const int world = 2;
  int64_t steps = -1;
  for (int rank = 0; rank < world; ++rank) {
    auto source = Open(rank, world);
    if (steps < 0) steps = source->steps_in_epoch();
    EXPECT_EQ(source->steps_in_epoch(), steps) << "ranks must run the same number of steps";
    int64_t taken = 0;
    while (true) {
      auto batch = source->Next();
      ASSERT_TRUE(batch.ok()) << batch.status();
      if (!batch->has_value()) break;
      EXPECT_EQ((*batch)->inputs.sizes(), (std::vector<int64_t>{3, 16}));
      Collect(**batch, &seen);
      ++taken;
    }
    EXPECT_EQ(taken, steps);
  }
  EXPECT_EQ(seen, Expected());
}

TEST_F(LmBatchSourceTest, RowsContinueTheirDocumentAndFlagNewOnes) {
  auto source = Open(0, 2);
  std::vector<int64_t> previous(3, -1);
  std::vector<int64_t> next_position(3, -1);
  int64_t flags = 0;
  while (true) {
    auto batch = source->Next();
    ASSERT_TRUE(batch.ok());
    if (!batch->has_value()) break;
    const Batch& b = **batch;
    for (int64_t row = 0; row < 3; ++row) {
      const int64_t record = b.records[static_cast<size_t>(row)];
      if (record < 0) continue;
      const int64_t first_input = PositionOf(b.inputs[row][0].item<int64_t>());
      if (b.new_document[row].item<bool>()) {
        ++flags;
        EXPECT_NE(record, previous[static_cast<size_t>(row)]);
      } else {
        EXPECT_EQ(record, previous[static_cast<size_t>(row)])
            << "a row switched documents silently";
        EXPECT_EQ(first_input, next_position[static_cast<size_t>(row)]) << "a row skipped tokens";
      }
      previous[static_cast<size_t>(row)] = record;
      next_position[static_cast<size_t>(row)] = first_input + 16;
    }
  }
  EXPECT_GT(flags, 10);
}

TEST_F(LmBatchSourceTest, ResumeReproducesTheUninterruptedRunWithAndWithoutPrefetch) {
  for (bool prefetch : {false, true}) {
    auto uninterrupted = Open(1, 2);
    auto first = prefetch ? Prefetch(Open(1, 2)) : Open(1, 2);
    for (int i = 0; i < 9; ++i) {
      ASSERT_TRUE(first->Next().ok());
      ASSERT_TRUE(uninterrupted->Next().ok());
    }
    const std::string state = first->SaveState();
    EXPECT_EQ(first->step(), 9);
    auto resumed = Open(1, 2);
    ASSERT_TRUE(resumed->LoadState(state).ok());
    EXPECT_EQ(resumed->steps_in_epoch(), uninterrupted->steps_in_epoch());
    int64_t compared = 0;
    while (true) {
      auto a = uninterrupted->Next();
      auto b = resumed->Next();
      ASSERT_TRUE(a.ok() && b.ok());
      ASSERT_EQ(a->has_value(), b->has_value());
      if (!a->has_value()) break;
      ASSERT_TRUE(at::equal((*a)->inputs, (*b)->inputs)) << "prefetch " << prefetch;
      ASSERT_TRUE(at::equal((*a)->targets, (*b)->targets));
      ASSERT_TRUE(at::equal((*a)->loss_mask, (*b)->loss_mask));
      ASSERT_TRUE(at::equal((*a)->new_document, (*b)->new_document));
      ++compared;
    }
    EXPECT_GT(compared, 10);
  }
}

TEST_F(LmBatchSourceTest, ResumingOnAnotherWorldSizeNeitherRepeatsNorSkips) {
  std::map<int64_t, int> seen;
  std::vector<std::unique_ptr<BatchSource>> two;
  for (int rank = 0; rank < 2; ++rank) two.push_back(Open(rank, 2));
  for (int step = 0; step < 11; ++step) {
    for (auto& source : two) {
      auto batch = source->Next();
      ASSERT_TRUE(batch.ok() && batch->has_value());
      Collect(**batch, &seen);
    }
  }
  const std::string state = two[0]->SaveState();
  EXPECT_EQ(state, two[1]->SaveState()) << "every rank saves the same global position";
  for (int rank = 0; rank < 3; ++rank) {
    auto source = Open(rank, 3);
    ASSERT_TRUE(source->LoadState(state).ok());
    EXPECT_EQ(source->step(), 11);
    while (true) {
      auto batch = source->Next();
      ASSERT_TRUE(batch.ok());
      if (!batch->has_value()) break;
      Collect(**batch, &seen);
    }
  }
  EXPECT_EQ(seen, Expected());
}

TEST_F(LmBatchSourceTest, EpochsShuffleDifferentlyAndBothCoverEverything) {
  auto source = Open(0, 1);
  std::vector<int64_t> first_records;
  std::map<int64_t, int> seen0, seen1;
  while (true) {
    auto batch = source->Next();
    ASSERT_TRUE(batch.ok());
    if (!batch->has_value()) break;
    if (first_records.size() < 3) first_records.push_back((*batch)->records[0]);
    Collect(**batch, &seen0);
  }
  ASSERT_TRUE(source->StartEpoch(1).ok());
  std::vector<int64_t> second_records;
  while (true) {
    auto batch = source->Next();
    ASSERT_TRUE(batch.ok());
    if (!batch->has_value()) break;
    if (second_records.size() < 3) second_records.push_back((*batch)->records[0]);
    Collect(**batch, &seen1);
  }
  EXPECT_NE(first_records, second_records);
  EXPECT_EQ(seen0, Expected());
  EXPECT_EQ(seen1, Expected());
}

TEST_F(LmBatchSourceTest, StatesFromElsewhereAreRefused) {
  auto source = Open(0, 1);
  EXPECT_EQ(source->LoadState("not json").code(), absl::StatusCode::kInvalidArgument);
  const std::string other = testing::TempPath("other_lm.h5");
  testing::WriteLmCorpus(other, {5, 6, 7});
  auto other_source = OpenBatchSource(other, {});
  ASSERT_TRUE(other_source.ok());
  const absl::Status status = source->LoadState((*other_source)->SaveState());
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("another corpus"));
}

// ---- seq2seq ----------------------------------------------------------------------

class Seq2SeqBatchSourceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    path_ = new std::string(testing::TempPath("s2s.h5"));
    for (int i = 0; i < 150; ++i) {
      source_lengths_.push_back(2 + (i * 13) % 40);  // some beyond max_source_length 32
      target_lengths_.push_back(2 + (i * 7) % 30);
    }
    testing::WriteSeq2SeqCorpus(*path_, source_lengths_, target_lengths_);
  }
  std::unique_ptr<BatchSource> Open(int rank, int world,
                                    TruncationPolicy policy = TruncationPolicy::kTruncate) {
    BatchSourceOptions options;
    options.rank = rank;
    options.world_size = world;
    options.max_tokens = 96;
    options.max_source_length = 32;
    options.max_target_length = 32;
    options.truncation = policy;
    options.seed = 3;
    auto source = OpenBatchSource(*path_, options);
    EXPECT_TRUE(source.ok()) << source.status();
    return *std::move(source);
  }
  static std::string* path_;
  static std::vector<int64_t> source_lengths_, target_lengths_;
};
std::string* Seq2SeqBatchSourceTest::path_ = nullptr;
std::vector<int64_t> Seq2SeqBatchSourceTest::source_lengths_;
std::vector<int64_t> Seq2SeqBatchSourceTest::target_lengths_;

TEST_F(Seq2SeqBatchSourceTest, EveryExampleOnceWithinTheTokenBudgetAndSameSteps) {
  std::multiset<int64_t> seen;
  const int world = 3;
  std::vector<std::unique_ptr<BatchSource>> ranks;
  for (int rank = 0; rank < world; ++rank) ranks.push_back(Open(rank, world));
  const int64_t steps = ranks[0]->steps_in_epoch();
  for (auto& source : ranks) {
    EXPECT_EQ(source->steps_in_epoch(), steps);
    for (int64_t step = 0; step < steps; ++step) {
      auto batch = source->Next();
      ASSERT_TRUE(batch.ok() && batch->has_value()) << "rank ran out before step " << step;
      const Batch& b = **batch;
      const int64_t rows = b.source.size(0);
      const int64_t width = std::max(b.source.size(1), b.targets.size(1));
      EXPECT_LE(rows * width, 96) << "padded tokens over max_tokens";
      EXPECT_LE(b.source.size(1), 32);
      for (int64_t row = 0; row < rows; ++row) {
        const int64_t record = b.records[static_cast<size_t>(row)];
        seen.insert(record);
        // Source tokens are the record's, truncated to 31 + eos.
        int64_t offset = 0;
        for (int64_t r = 0; r < record; ++r) offset += source_lengths_[static_cast<size_t>(r)];
        const int64_t kept = std::min<int64_t>(source_lengths_[static_cast<size_t>(record)], 32);
        for (int64_t i = 0; i + 1 < kept; ++i) {
          ASSERT_EQ(b.source[row][i].item<int64_t>(), SourceToken(offset + i));
        }
        if (source_lengths_[static_cast<size_t>(record)] > 32) {
          EXPECT_EQ(b.source[row][31].item<int64_t>(), 3) << "truncation keeps an eos";
        }
        EXPECT_EQ(b.source_mask[row].sum().item<int64_t>(), kept);
        EXPECT_EQ(b.inputs[row][0].item<int64_t>(), 2) << "decoder input starts with bos";
        EXPECT_EQ(b.inputs[row][1].item<int64_t>(), b.targets[row][0].item<int64_t>());
      }
    }
    auto end = source->Next();
    ASSERT_TRUE(end.ok());
    EXPECT_FALSE(end->has_value());
  }
  std::multiset<int64_t> expected;
  for (int64_t r = 0; r < 150; ++r) expected.insert(r);
  EXPECT_EQ(seen, expected);
}

TEST_F(Seq2SeqBatchSourceTest, PrefixLmRowsAreSourceSepTargetWithTheLossOnTheTargetOnly) {
  BatchSourceOptions options;
  options.max_tokens = 96;
  options.max_source_length = 32;
  options.max_target_length = 32;
  options.prefix_lm = true;
  auto source = OpenBatchSource(*path_, options);
  ASSERT_TRUE(source.ok()) << source.status();
  // Each record's tokens as the batch should hold them: truncated to 31 and
  // an eos, which the prefix replaces by <sep> (these synthetic records have
  // no eos of their own, so <sep> follows an untruncated source).
  std::vector<int64_t> source_offset = {0}, target_offset = {0};
  for (size_t r = 0; r < source_lengths_.size(); ++r) {
    source_offset.push_back(source_offset.back() + source_lengths_[r]);
    target_offset.push_back(target_offset.back() + target_lengths_[r]);
  }
  const auto side = [](int64_t length, int64_t offset, int32_t (*token)(int64_t)) {
    std::vector<int64_t> tokens;
    for (int64_t i = 0; i < std::min<int64_t>(length, 32); ++i) tokens.push_back(token(offset + i));
    if (length > 32) tokens.back() = 3;
    return tokens;
  };
  std::multiset<int64_t> seen;
  while (true) {
    auto batch = (*source)->Next();
    ASSERT_TRUE(batch.ok()) << batch.status();
    if (!batch->has_value()) break;
    const Batch& b = **batch;
    EXPECT_FALSE(b.source.defined()) << "the source is in the decoder's inputs";
    EXPECT_LE(b.inputs.numel(), 96) << "padded tokens over max_tokens";
    int64_t loss_tokens = 0;
    for (int64_t row = 0; row < b.inputs.size(0); ++row) {
      const auto r = static_cast<size_t>(b.records[static_cast<size_t>(row)]);
      seen.insert(static_cast<int64_t>(r));
      std::vector<int64_t> sequence = side(source_lengths_[r], source_offset[r], SourceToken);
      if (sequence.back() == 3) sequence.pop_back();
      sequence.push_back(4);  // <sep>
      const int64_t prompt = static_cast<int64_t>(sequence.size());
      const std::vector<int64_t> target = side(target_lengths_[r], target_offset[r], TargetToken);
      sequence.insert(sequence.end(), target.begin(), target.end());
      for (int64_t i = 0; i < b.inputs.size(1); ++i) {
        const bool in = i + 1 < static_cast<int64_t>(sequence.size());
        ASSERT_EQ(b.inputs[row][i].item<int64_t>(), in ? sequence[static_cast<size_t>(i)] : 0);
        ASSERT_EQ(b.targets[row][i].item<int64_t>(), in ? sequence[static_cast<size_t>(i + 1)] : 0);
        ASSERT_EQ(b.loss_mask[row][i].item<bool>(), in && i + 1 >= prompt) << "position " << i;
      }
      EXPECT_EQ(b.loss_mask[row].sum().item<int64_t>(), static_cast<int64_t>(target.size()));
      loss_tokens += static_cast<int64_t>(target.size());
    }
    EXPECT_EQ(b.loss_tokens, loss_tokens);
  }
  std::multiset<int64_t> expected;
  for (int64_t r = 0; r < 150; ++r) expected.insert(r);
  EXPECT_EQ(seen, expected);

  options.max_tokens = 63;
  auto small = OpenBatchSource(*path_, options);
  EXPECT_THAT(small.status().message(), HasSubstr("max_source_length + max_target_length"));
}

TEST_F(Seq2SeqBatchSourceTest, SkipPolicyLeavesLongExamplesOut) {
  auto source = Open(0, 1, TruncationPolicy::kSkip);
  std::set<int64_t> seen;
  while (true) {
    auto batch = source->Next();
    ASSERT_TRUE(batch.ok());
    if (!batch->has_value()) break;
    for (int64_t record : (*batch)->records) seen.insert(record);
  }
  for (int64_t r = 0; r < 150; ++r) {
    const bool long_example = source_lengths_[static_cast<size_t>(r)] > 32 ||
                              target_lengths_[static_cast<size_t>(r)] > 32;
    EXPECT_EQ(seen.count(r) == 0, long_example) << "record " << r;
  }
}

TEST_F(Seq2SeqBatchSourceTest, ResumeExactAndAcrossWorldSizes) {
  auto uninterrupted = Open(0, 2);
  auto first = Prefetch(Open(0, 2));
  auto partner = Open(1, 2);
  std::multiset<int64_t> seen;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(uninterrupted->Next().ok());
    auto batch = first->Next();
    auto other = partner->Next();
    ASSERT_TRUE(batch.ok() && other.ok());
    for (int64_t record : (*batch)->records) seen.insert(record);
    for (int64_t record : (*other)->records) seen.insert(record);
  }
  const std::string state = first->SaveState();
  auto resumed = Open(0, 2);
  ASSERT_TRUE(resumed->LoadState(state).ok());
  auto a = uninterrupted->Next();
  auto b = resumed->Next();
  ASSERT_TRUE(a.ok() && b.ok() && a->has_value() && b->has_value());
  EXPECT_TRUE(at::equal((*a)->source, (*b)->source));
  EXPECT_TRUE(at::equal((*a)->targets, (*b)->targets));

  // Continue the same epoch on 3 ranks: the rest, each example once.
  for (int rank = 0; rank < 3; ++rank) {
    auto source = Open(rank, 3);
    ASSERT_TRUE(source->LoadState(state).ok());
    while (true) {
      auto batch = source->Next();
      ASSERT_TRUE(batch.ok());
      if (!batch->has_value()) break;
      for (int64_t record : (*batch)->records) seen.insert(record);
    }
  }
  std::multiset<int64_t> expected;
  for (int64_t r = 0; r < 150; ++r) expected.insert(r);
  EXPECT_EQ(seen, expected);
}

TEST_F(Seq2SeqBatchSourceTest, LmStateIsRefused) {
  auto source = Open(0, 1);
  const std::string lm = testing::TempPath("lm_for_s2s.h5");
  testing::WriteLmCorpus(lm, {5, 6});
  auto lm_source = OpenBatchSource(lm, {});
  ASSERT_TRUE(lm_source.ok());
  EXPECT_EQ(source->LoadState((*lm_source)->SaveState()).code(),
            absl::StatusCode::kFailedPrecondition);
}

// The task table decides what a corpus is: a task outside it is refused by
// name, never taken for seq2seq (data/task.h).
TEST(TaskTableTest, CorporaOfUnknownTasksAreRefusedAndKnownOnesKeepTheirShape) {
  auto writer =
      CorpusWriter::Create(testing::TempPath("unknown_task.h5"), "poetry", TokenizerInfo{});
  ASSERT_FALSE(writer.ok());
  EXPECT_THAT(
      std::string(writer.status().message()),
      ::testing::HasSubstr("unknown task 'poetry'; known: lm, translation, summarization, qa"));
  for (const TaskInfo& task : Tasks()) {
    auto found = FindTask(task.name);
    ASSERT_TRUE(found.ok()) << task.name;
    EXPECT_EQ((*found)->seq2seq, task.task != Task::kLanguageModel) << task.name;
  }
}

}  // namespace
}  // namespace memtrain::data
