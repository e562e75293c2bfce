// File: data/text_inputs.h
//
// Text a user gives memtrain-generate (one input per line) turned into the
// token ids memtrain-prepare would have stored for it, without SentencePiece
// in the calling process: the text is encoded by a memtrain-prepare child
// (`--encode_stdin`), which links SentencePiece and no LibTorch
// (docs/ARCHITECTURE.md §5, "Generation from text", says why a child).
//
// One line per input, by task (the raw-record formats of docs/DATA.md §3):
//   translation:   the source sentence, as written (no Moses unescaping).
//   summarization: the document; or a JSON object with "document".
//   qa:            a JSON object with "question" and optional "system_prompt"
//                  (OpenOrca's fields); or a plain line, taken as the question.
//   lm:            the prompt to continue.
// Ids follow prepare's record layout (data/prepare.h): a seq2seq source is
// its segments' ids (a QA question preceded by <sep>) then eos; an lm prompt
// is the line's ids without eos (eos alone for an empty line: a new document).
//
//   MEMTRAIN_ASSIGN_OR_RETURN(std::vector<std::string> lines, ReadInputLines("src.en"));
//   MEMTRAIN_ASSIGN_OR_RETURN(auto inputs, ParseInputLines(Task::kTranslation, lines));
//   MEMTRAIN_ASSIGN_OR_RETURN(auto ids, EncodeInputs(encoder, Task::kTranslation, inputs, sep,
//   eos));
#ifndef MEMTRAIN_DATA_TEXT_INPUTS_H_
#define MEMTRAIN_DATA_TEXT_INPUTS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/corpus_reader.h"
#include "data/task.h"

namespace memtrain::data {

/// The lines of `path` ("-": standard input), without their line ends ("\n"
/// or "\r\n"). kNotFound when the file cannot be opened.
absl::StatusOr<std::vector<std::string>> ReadInputLines(const std::string& path);

/// Each line as the segments prepare would make of it for `task`.
/// kInvalidArgument naming the line (1-based) for text that is not valid
/// UTF-8, a malformed JSON line, or a JSON line missing its required field.
absl::StatusOr<std::vector<std::vector<TextSegment>>> ParseInputLines(
    Task task, const std::vector<std::string>& lines);

/// Runs `memtrain-prepare --encode_stdin` on texts: the path of the binary
/// and the corpus whose tokenizer it loads.
struct EncoderProcess {
  std::string prepare_binary;
  std::string tokenizer_corpus;
};

/// `texts` encoded by the child, in order (SentencePiece ids, no specials).
absl::StatusOr<std::vector<std::vector<int32_t>>> EncodeInChild(
    const EncoderProcess& encoder, const std::vector<std::string>& texts);

/// prepare's record layout (data/prepare.h): each segment's ids, <sep>
/// before a segment that asks for one, then eos; `long_range` (optional)
/// gets each id's segment flag. The one place the layout is written down.
void AppendSegmentIds(const std::vector<TextSegment>& segments,
                      const std::vector<std::vector<int32_t>>& segment_ids, int32_t sep,
                      int32_t eos, std::vector<int32_t>* ids, std::vector<uint8_t>* long_range);

/// The inputs' ids in prepare's record layout for `task` (above), encoded by
/// one child for all of them.
absl::StatusOr<std::vector<std::vector<int32_t>>> EncodeInputs(
    const EncoderProcess& encoder, Task task, const std::vector<std::vector<TextSegment>>& inputs,
    int32_t sep, int32_t eos);

/// The child's side: reads length-prefixed texts from `in_fd` until end of
/// file, then writes each one's ids, as `encode` gives them, to `out_fd`.
/// Reading everything first is what lets the parent write all its texts
/// before it reads (no pipe deadlock).
absl::Status ServeEncodeRequests(
    int in_fd, int out_fd, const std::function<std::vector<int32_t>(const std::string&)>& encode);

}  // namespace memtrain::data

#endif  // MEMTRAIN_DATA_TEXT_INPUTS_H_
