// File: data/batch_source.h
//
// `BatchSource`: this rank's batches of a memtrain HDF5 corpus, in a global
// order fixed by (seed, epoch), resumable from a few bytes of state.
//
//   BatchSourceOptions options;  options.rank = 1;  options.world_size = 2;
//   MEMTRAIN_ASSIGN_OR_RETURN(auto source, OpenBatchSource("wiki.train.h5", options));
//   while (true) {
//     MEMTRAIN_ASSIGN_OR_RETURN(std::optional<Batch> batch, source->Next());
//     if (!batch) { source->StartEpoch(source->epoch() + 1); continue; }
//     ...
//     checkpoint.data_state = source->SaveState();
//   }
//
// Two kinds, chosen by the file's task:
//   - lm (Transformer-XL / Memorizing Transformer streams): `streams` rows per
//     rank; each row continues one document across steps in segments of
//     `segment_length` tokens and never mixes two documents in a segment (the
//     rest of a document's last segment is padding); `new_document` marks the
//     rows whose document starts at this step, so memories can be cleared.
//   - seq2seq: length-bucketed batches whose padded size (rows × longest side)
//     stays within `max_tokens` (fairseq's --max-tokens), dealt round-robin so
//     that every rank runs the same number of steps (a rank without a batch at
//     the last step gets an empty one). For a decoder-only model
//     (`prefix_lm`) each record is one sequence, PrefixLmPrompt(source) then
//     the target, whose loss counts the target tokens only; a batch's padded
//     size is rows × longest (source + target).
//
// Every rank computes the same global plan from the offsets alone and reads
// only its own rows' tokens (hyperslab reads); memory does not grow with the
// corpus beyond 8 bytes per record of offsets.
//
// State: SaveState() returns the position after the last batch returned;
// LoadState() on a source with the same world size continues exactly as an
// uninterrupted run. With another world size nothing is repeated or skipped
// within the epoch: lm streams carry their unfinished documents over, from the
// token where they stopped, to the new streams (then the untouched documents
// follow in order); seq2seq continues with the next batch of the global list.
// docs/DATA.md, "BatchSource", has the details.
#ifndef MEMTRAIN_DATA_BATCH_SOURCE_H_
#define MEMTRAIN_DATA_BATCH_SOURCE_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace memtrain::data {

/// One step's data for this rank. Token tensors are int64, masks bool.
struct Batch {
  /// lm: [streams, L] inputs / next-token targets. seq2seq: decoder side
  /// [rows, T]: inputs = bos + target[:-1], targets = target. seq2seq with
  /// `prefix_lm`: [rows, P + T - 1] next-token inputs / targets of the
  /// sequence PrefixLmPrompt(source) (P tokens) + target (T tokens).
  at::Tensor inputs, targets;
  /// Positions whose target counts in the loss (prefix_lm: the target's).
  at::Tensor loss_mask;
  /// lm only: [streams, L] target is a long-range token (demo corpus, or
  /// far into its document: BatchSourceOptions::long_range_from).
  at::Tensor long_range;
  /// lm only: [streams] this row's document starts at this step.
  at::Tensor new_document;
  /// seq2seq without prefix_lm: [rows, S] encoder input and its mask (true = token).
  at::Tensor source, source_mask;
  /// Record index of each row (-1: no record), for evaluation and debugging.
  std::vector<int64_t> records;
  /// lm only: the token of its record where each row's segment starts (-1: no record).
  std::vector<int64_t> positions;
  int64_t loss_tokens = 0;
  int64_t step = 0;  ///< within the epoch
};

enum class TruncationPolicy {
  kTruncate,  ///< keep the first max-1 tokens and the eos
  kSkip,      ///< leave the example out (counted)
};

/// The batch-shape options every binary that reads batches takes as flags of
/// these names (launch/batch_flags.h): X(name, help), one row per option of
/// BatchSourceOptions that a user sets. memtrain-train records them in its
/// checkpoints (trainer/trainer_options.h).
#define MEMTRAIN_BATCH_SHAPE_OPTIONS(X)                                                    \
  X(streams, "lm: document streams (batch rows) per rank.")                                \
  X(segment_length,                                                                        \
    "lm: tokens per stream and step (generation: a segment ends every this many tokens).") \
  X(max_tokens, "seq2seq: padded tokens per batch and rank, the larger side.")             \
  X(max_source_length,                                                                     \
    "seq2seq: longer sources are truncated (memtrain-generate --input: refused).")         \
  X(max_target_length, "seq2seq: longer targets are truncated.")

struct BatchSourceOptions {
  int rank = 0;
  int world_size = 1;
  uint64_t seed = 1;
  int64_t epoch = 0;
  // lm
  int streams = 8;           ///< rows per rank
  int segment_length = 512;  ///< tokens per row and step
  /// lm: also mark as long-range every target at least this many tokens into
  /// its document (0: only the corpus's own marks, the demo corpus's). Not a
  /// batch-shape flag: memtrain-eval --long_range_from sets it, so that on
  /// corpora without marks the long-range ppl measures how a model uses the
  /// far context of long documents.
  int64_t long_range_from = 0;
  // seq2seq
  int64_t max_tokens = 4096;  ///< padded tokens per batch, the larger side
  int64_t max_source_length = 1024;
  int64_t max_target_length = 1024;
  TruncationPolicy truncation = TruncationPolicy::kTruncate;
  /// seq2seq for a decoder-only model: each record as one prefix-LM sequence
  /// (see Batch). Not a flag: the binaries set it from the model
  /// (encoder_layers = 0); lm corpora ignore it.
  bool prefix_lm = false;
  /// HDF5 chunk cache per dataset; 0 = automatic: for lm, room for 4 token
  /// chunks (64 KiB each) per stream, at least 4 MiB; for seq2seq, whose
  /// batches read examples all over the file, 32 MiB. Memory use is bounded by
  /// this, not by the corpus size.
  int64_t chunk_cache_bytes = 0;
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  /// This rank's next batch, or nullopt when the epoch is over.
  virtual absl::StatusOr<std::optional<Batch>> Next() = 0;
  /// Starts `epoch` from its beginning (a new global order).
  virtual absl::Status StartEpoch(int64_t epoch) = 0;
  virtual int64_t epoch() const = 0;
  /// Steps in the current epoch, the same on every rank.
  virtual int64_t steps_in_epoch() const = 0;
  /// Steps already taken in the current epoch.
  virtual int64_t step() const = 0;
  /// The position after the last batch returned, as bytes (JSON).
  virtual std::string SaveState() const = 0;
  /// kFailedPrecondition when the state belongs to another corpus or another
  /// kind of source; kInvalidArgument when it does not parse.
  virtual absl::Status LoadState(const std::string& state) = 0;
};

/// A decoder-only model's context for a seq2seq source (ending with eos, as
/// records and data/text_inputs.h's inputs do): the source without a final
/// eos, then <sep>; the target follows it. Training (prefix_lm batches) and
/// generation (trainer/generation.h) share this layout.
std::vector<int32_t> PrefixLmPrompt(std::vector<int32_t> source, int32_t sep, int32_t eos);

/// Opens `path` and picks the kind by the file's task. kFailedPrecondition for
/// prefix_lm with a tokenizer that has no <sep>.
absl::StatusOr<std::unique_ptr<BatchSource>> OpenBatchSource(const std::string& path,
                                                             const BatchSourceOptions& options);

/// Runs `source` on a background thread, `depth` batches ahead. All of the
/// inner source's calls (and so all HDF5 calls) happen on that thread; errors
/// come back from Next() with their message. SaveState() is the state after
/// the last batch returned to the caller, not the last one prefetched.
std::unique_ptr<BatchSource> Prefetch(std::unique_ptr<BatchSource> source, int depth = 2);

}  // namespace memtrain::data

#endif  // MEMTRAIN_DATA_BATCH_SOURCE_H_
