#include "data/text_inputs.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/child_process.h"
#include "common/status_macros.h"
#include "data/internal/text.h"
#include "nlohmann/json.hpp"

namespace memtrain::data {
namespace {

absl::Status ErrnoError(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError("writing the replies");
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Reads exactly `size` bytes; false at a clean end of file before the first.
absl::StatusOr<bool> ReadExactly(int fd, char* data, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("reading the requests");
    if (n == 0) {
      if (done == 0) return false;
      return absl::DataLossError("the requests ended inside a message");
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

// Frames are a uint32 count in host order (both ends are one machine) and
// then that many bytes (a text) or int32 ids.
void AppendFrame(std::string* out, const void* data, uint32_t count, size_t item_size) {
  out->append(reinterpret_cast<const char*>(&count), sizeof(count));
  out->append(static_cast<const char*>(data), count * item_size);
}

// A string member of a JSON input line; "" when absent and not required.
absl::StatusOr<std::string> ParseJsonField(const char* field, bool required,
                                           const nlohmann::json& object) {
  const auto it = object.find(field);
  if (it == object.end() || it->is_null()) {
    if (required) return absl::InvalidArgumentError(absl::StrCat("missing field '", field, "'"));
    return std::string();
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("field '", field, "' must be a string, got ", it->type_name()));
  }
  return it->get<std::string>();
}

absl::StatusOr<std::vector<TextSegment>> ParseLine(Task task, const std::string& line) {
  const bool json = !line.empty() && line.front() == '{' &&
                    (task == Task::kQuestionAnswering || task == Task::kSummarization);
  if (!json) {
    if (task != Task::kQuestionAnswering) return std::vector<TextSegment>{{line, false, false}};
    return std::vector<TextSegment>{{line, false, true}};
  }
  nlohmann::json object = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!object.is_object()) return absl::InvalidArgumentError("not a JSON object");
  if (task == Task::kSummarization) {
    MEMTRAIN_ASSIGN_OR_RETURN(std::string document, ParseJsonField("document", true, object));
    return std::vector<TextSegment>{{std::move(document), false, false}};
  }
  MEMTRAIN_ASSIGN_OR_RETURN(std::string system_prompt,
                            ParseJsonField("system_prompt", false, object));
  MEMTRAIN_ASSIGN_OR_RETURN(std::string question, ParseJsonField("question", true, object));
  std::vector<TextSegment> segments;
  // As the OpenOrca reader: a blank system prompt is left out.
  if (!internal::IsBlank(system_prompt)) segments.push_back({std::move(system_prompt)});
  segments.push_back({std::move(question), false, true});
  return segments;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ReadInputLines(const std::string& path) {
  std::ifstream file;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  }
  std::istream& in = path == "-" ? std::cin : file;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return lines;
}

absl::StatusOr<std::vector<std::vector<TextSegment>>> ParseInputLines(
    Task task, const std::vector<std::string>& lines) {
  std::vector<std::vector<TextSegment>> inputs;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (!internal::IsValidUtf8(lines[i])) {
      return absl::InvalidArgumentError(absl::StrCat("input line ", i + 1, " is not valid UTF-8"));
    }
    absl::StatusOr<std::vector<TextSegment>> segments = ParseLine(task, lines[i]);
    if (!segments.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("input line ", i + 1, ": ", segments.status().message()));
    }
    inputs.push_back(*std::move(segments));
  }
  return inputs;
}

void AppendSegmentIds(const std::vector<TextSegment>& segments,
                      const std::vector<std::vector<int32_t>>& segment_ids, int32_t sep,
                      int32_t eos, std::vector<int32_t>* ids, std::vector<uint8_t>* long_range) {
  for (size_t s = 0; s < segments.size(); ++s) {
    if (segments[s].separator_before) {
      ids->push_back(sep);
      if (long_range) long_range->push_back(0);
    }
    ids->insert(ids->end(), segment_ids[s].begin(), segment_ids[s].end());
    if (long_range)
      long_range->insert(long_range->end(), segment_ids[s].size(), segments[s].long_range ? 1 : 0);
  }
  ids->push_back(eos);
  if (long_range) long_range->push_back(0);
}

absl::StatusOr<std::vector<std::vector<int32_t>>> EncodeInChild(
    const EncoderProcess& encoder, const std::vector<std::string>& texts) {
  std::string requests;
  for (const std::string& text : texts) AppendFrame(&requests, text.data(), text.size(), 1);
  ChildCommand command;
  command.argv = {encoder.prepare_binary, "--encode_stdin",
                  absl::StrCat("--tokenizer_from=", encoder.tokenizer_corpus)};
  command.pipe_stdin = true;
  absl::StatusOr<std::unique_ptr<ChildProcess>> started = ChildProcess::Start(command);
  if (!started.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot run ", encoder.prepare_binary, " (the tokenizer): ", started.status().message()));
  }
  ChildProcess& child = **started;
  // The child reads every request before it answers.
  absl::Status exchanged = child.WriteToStdin(requests);
  child.CloseStdin();
  std::vector<std::vector<int32_t>> encoded;
  while (exchanged.ok() && encoded.size() < texts.size()) {
    uint32_t count = 0;
    absl::StatusOr<bool> got = child.ReadExactly(&count, sizeof(count));
    if (got.ok() && !*got) got = absl::DataLossError("the tokenizer ended early");
    std::vector<int32_t> ids(got.ok() ? count : 0);
    if (got.ok()) got = child.ReadExactly(ids.data(), ids.size() * sizeof(int32_t));
    if (got.ok() && !*got && count > 0) got = absl::DataLossError("the tokenizer ended early");
    if (!got.ok()) {
      exchanged = got.status();
      break;
    }
    encoded.push_back(std::move(ids));
  }
  // Its exit status first: a tokenizer that failed explains a broken exchange
  // (its log is above).
  MEMTRAIN_RETURN_IF_ERROR(child.Wait());
  MEMTRAIN_RETURN_IF_ERROR(exchanged);
  return encoded;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> EncodeInputs(
    const EncoderProcess& encoder, Task task, const std::vector<std::vector<TextSegment>>& inputs,
    int32_t sep, int32_t eos) {
  std::vector<std::string> texts;
  for (const auto& segments : inputs) {
    for (const TextSegment& segment : segments) texts.push_back(segment.text);
  }
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> encoded,
                            EncodeInChild(encoder, texts));
  std::vector<std::vector<int32_t>> ids(inputs.size());
  size_t next = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<std::vector<int32_t>> segment_ids(
        encoded.begin() + static_cast<std::ptrdiff_t>(next),
        encoded.begin() + static_cast<std::ptrdiff_t>(next + inputs[i].size()));
    next += inputs[i].size();
    AppendSegmentIds(inputs[i], segment_ids, sep, eos, &ids[i], nullptr);
    // An lm prompt continues its text: no eos, unless it is all there is.
    if (task == Task::kLanguageModel && ids[i].size() > 1) ids[i].pop_back();
  }
  return ids;
}

absl::Status ServeEncodeRequests(
    int in_fd, int out_fd, const std::function<std::vector<int32_t>(const std::string&)>& encode) {
  std::vector<std::string> texts;
  for (;;) {
    uint32_t size = 0;
    MEMTRAIN_ASSIGN_OR_RETURN(bool more, ReadExactly(in_fd, reinterpret_cast<char*>(&size), 4));
    if (!more) break;
    std::string text(size, '\0');
    MEMTRAIN_ASSIGN_OR_RETURN(more, ReadExactly(in_fd, text.data(), size));
    if (!more && size > 0) return absl::DataLossError("the input ended inside a message");
    texts.push_back(std::move(text));
  }
  std::string replies;
  for (const std::string& text : texts) {
    const std::vector<int32_t> ids = encode(text);
    AppendFrame(&replies, ids.data(), static_cast<uint32_t>(ids.size()), sizeof(int32_t));
  }
  return WriteAll(out_fd, replies.data(), replies.size());
}

}  // namespace memtrain::data
