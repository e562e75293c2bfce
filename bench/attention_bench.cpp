// bench-attention: training and decoding cost of every registered attention
// kind against softmax, measured in the same run.
//
//   build/bin/bench-attention [--json FILE] [--lengths 256,512,...] [--tokens 16384]
//                             [--warmup 1 --repeats 3] [--device auto|cpu|cuda]
//
// Numbers (docs/BENCHMARKS.md):
//   train us/token  forward + backward of one layer (D = --width, --heads) on a
//                   batch of --tokens tokens (batch = tokens / n), median of
//                   --repeats after --warmup, divided by the tokens; non-causal
//                   and causal
//   peak MB         the measuring process's peak RSS minus that of a process
//                   that only starts up (each measurement runs in its own
//                   process, so one variant's memory never hides another's)
//   decode us/token one new token with a DecodeState at positions 1 .. 4096
//                   (batch 1), averaged over a window ending at each position
//   state bytes     what that DecodeState holds after the position (its
//                   tensors' bytes): a KV cache grows with the position, a
//                   constant state does not
//   ratio           the kind's number over softmax's at the same point
// Targets (issue "model/"): each linear kind's train cost per token within
// 1.3x from n = 512 to the longest length, at least 4x cheaper than softmax at
// n = 8192, and its decode time per token flat in position.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/bench_support.h"
#include "common/binary.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "launch/device.h"
#include "model/attention.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::vector<std::string>, lengths,
          std::vector<std::string>({"256", "512", "1024", "2048", "4096", "8192", "16384"}),
          "Sequence lengths n for the training measurements.");
ABSL_FLAG(int64_t, tokens, 16384, "Tokens per training batch (batch = tokens / n).");
ABSL_FLAG(int64_t, width, 512, "Model width D.");
ABSL_FLAG(int64_t, heads, 8, "Heads.");
ABSL_FLAG(int64_t, decode_positions, 4096, "Decode this many tokens one at a time.");
ABSL_FLAG(std::vector<std::string>, kinds, {},
          "Kinds to measure (default: every registered kind).");
ABSL_FLAG(bool, train, true, "Measure training cost.");
ABSL_FLAG(bool, decode, true, "Measure decoding cost.");
ABSL_FLAG(std::string, measure, "",
          "Internal: measure one point (kind:causal:n, kind:decode, or startup).");

namespace memtrain {
namespace {

using model::AttentionCall;
using model::AttentionOptions;

// `longest`: the longest key sequence the layer will see (Linformer's
// projections have one column per position up to max_length).
std::shared_ptr<model::AttentionImpl> Make(const std::string& kind, bool causal,
                                           int64_t longest = 0) {
  AttentionOptions options;
  options.layer = "bench." + kind;
  options.model_dim = absl::GetFlag(FLAGS_width);
  options.heads = absl::GetFlag(FLAGS_heads);
  options.causal = causal;
  options.linformer.max_length = std::max(options.linformer.max_length, longest);
  auto made = model::MakeAttention(kind, options);
  CHECK(made.ok()) << made.status();
  return *made;
}

// The device --device names (launch/device.h); set by the child's Main
// before it measures.
c10::Device measured_device = c10::kCPU;

// The clock reads device time only after the device's queued work is done.
absl::Time Now() {
  launch::WaitForDevice(measured_device);
  return absl::Now();
}

// Child: one training point. Prints seconds per token.
void MeasureTrain(const std::string& kind, bool causal, int64_t n) {
  auto attention = Make(kind, causal, n);
  attention->to(measured_device);
  const int64_t batch = std::max<int64_t>(1, absl::GetFlag(FLAGS_tokens) / n);
  const at::Tensor x =
      at::randn({batch, n, absl::GetFlag(FLAGS_width)}, at::TensorOptions().device(measured_device))
          .requires_grad_(true);
  AttentionCall call;
  call.query = x;
  call.causal = causal;
  auto step = [&] {
    attention->zero_grad();
    attention->forward(call).sum().backward();
  };
  for (int i = 0; i < bench::Warmup(); ++i) step();
  std::vector<double> times;
  for (int i = 0; i < bench::Repeats(); ++i) {
    const absl::Time start = Now();
    step();
    times.push_back(absl::ToDoubleSeconds(Now() - start));
  }
  std::printf("%.9g\n", bench::Median(times) / static_cast<double>(batch * n));
}

// The bytes `state` holds: the sum over its tensors (DecodeState::Tensors).
int64_t StateBytes(const model::DecodeState& state) {
  int64_t bytes = 0;
  for (const at::Tensor& tensor : state.Tensors()) {
    if (tensor.defined()) bytes += static_cast<int64_t>(tensor.nbytes());
  }
  return bytes;
}

// Child: decode one token at a time; prints "position seconds state_bytes"
// lines.
void MeasureDecode(const std::string& kind) {
  auto attention = Make(kind, true);
  attention->to(measured_device);
  at::NoGradGuard no_grad;
  attention->eval();
  auto state = attention->NewState(1);
  const int64_t positions = absl::GetFlag(FLAGS_decode_positions);
  AttentionCall call;
  call.causal = true;
  call.state = state.get();
  absl::Time window_start = Now();
  int64_t window = 0;
  for (int64_t t = 1; t <= positions; ++t) {
    call.query =
        at::randn({1, 1, absl::GetFlag(FLAGS_width)}, at::TensorOptions().device(measured_device));
    attention->forward(call);
    ++window;
    if ((t & (t - 1)) == 0 && t >= 16) {  // report at powers of two
      const double seconds =
          absl::ToDoubleSeconds(Now() - window_start) / static_cast<double>(window);
      std::printf("%lld %.9g %lld\n", static_cast<long long>(t), seconds,
                  static_cast<long long>(StateBytes(*state)));
      window_start = Now();
      window = 0;
    }
  }
}

// Runs this binary with --measure=`what`; its stdout and peak RSS.
absl::StatusOr<bench::ChildResult> RunMeasurement(const std::string& self,
                                                  const std::string& what) {
  bench::ChildCommand command;
  command.argv = {self,
                  "--measure=" + what,
                  "--device=" + absl::GetFlag(FLAGS_device),
                  absl::StrCat("--width=", absl::GetFlag(FLAGS_width)),
                  absl::StrCat("--heads=", absl::GetFlag(FLAGS_heads)),
                  absl::StrCat("--warmup=", bench::Warmup()),
                  absl::StrCat("--repeats=", bench::Repeats()),
                  absl::StrCat("--tokens=", absl::GetFlag(FLAGS_tokens)),
                  absl::StrCat("--decode_positions=", absl::GetFlag(FLAGS_decode_positions))};
  return bench::RunChild(command);
}

absl::Status Parent() {
  std::vector<std::string> kinds = absl::GetFlag(FLAGS_kinds);
  if (kinds.empty()) kinds = model::AttentionKinds();
  if (std::find(kinds.begin(), kinds.end(), "softmax") == kinds.end()) {
    return absl::InvalidArgumentError("--kinds: softmax is the baseline, it must be one of them");
  }
  std::vector<int64_t> lengths;
  for (const std::string& text : absl::GetFlag(FLAGS_lengths)) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(text, &n) || n < 1) {
      return absl::InvalidArgumentError(absl::StrCat("--lengths: '", text, "' is not a length"));
    }
    lengths.push_back(n);
  }
  MEMTRAIN_ASSIGN_OR_RETURN(const std::string self, bench::ThisExecutable());
  MEMTRAIN_ASSIGN_OR_RETURN(const bench::ChildResult startup, RunMeasurement(self, "startup"));
  std::printf(
      "# bench-attention: D=%lld, %lld heads, %lld tokens per training batch, %d thread(s), "
      "--device=%s; "
      "peak MB (host RSS) above a bare start (%.0f MB)\n",
      static_cast<long long>(absl::GetFlag(FLAGS_width)),
      static_cast<long long>(absl::GetFlag(FLAGS_heads)),
      static_cast<long long>(absl::GetFlag(FLAGS_tokens)), at::get_num_threads(),
      absl::GetFlag(FLAGS_device).c_str(), startup.peak_rss_mb);

  nlohmann::json results = nlohmann::json::object();
  results["device"] = absl::GetFlag(FLAGS_device);
  // train[kind][causal][n] = {us_per_token, peak_mb}
  std::map<std::string, std::map<bool, std::map<int64_t, std::pair<double, double>>>> train;
  for (const std::string& kind : absl::GetFlag(FLAGS_train) ? kinds : std::vector<std::string>{}) {
    const model::AttentionCapabilities caps = Make(kind, false)->capabilities();
    for (bool causal : {false, true}) {
      if ((causal && !caps.causal) || (!causal && !caps.non_causal)) continue;
      for (int64_t n : lengths) {
        // A point that fails (out of memory at a long n, say) leaves a gap, not the run.
        const absl::StatusOr<bench::ChildResult> r =
            RunMeasurement(self, absl::StrCat(kind, ":", causal ? 1 : 0, ":", n));
        if (!r.ok()) {
          LOG(WARNING) << "[bench-attention] " << r.status().message();
          std::printf("%-10s %-10s n=%-6lld failed (its error is above)\n", kind.c_str(),
                      causal ? "causal" : "non-causal", static_cast<long long>(n));
          continue;
        }
        train[kind][causal][n] = {std::stod(r->stdout_text) * 1e6,
                                  r->peak_rss_mb - startup.peak_rss_mb};
      }
    }
  }
  std::printf("\n%-10s %-10s %7s %12s %8s %10s %8s\n", "kind", "mode", "n", "train us/tok", "ratio",
              "peak MB", "ratio");
  for (const auto& [kind, modes] : train) {
    for (const auto& [causal, points] : modes) {
      for (const auto& [n, point] : points) {
        auto base = train["softmax"][causal].find(n);
        const bool have_base = base != train["softmax"][causal].end();
        std::printf(
            "%-10s %-10s %7lld %12.3f %8s %10.1f %8s\n", kind.c_str(),
            causal ? "causal" : "non-causal", static_cast<long long>(n), point.first,
            have_base ? absl::StrFormat("%.2f", point.first / base->second.first).c_str() : "-",
            point.second,
            have_base && base->second.second > 0
                ? absl::StrFormat("%.2f", point.second / base->second.second).c_str()
                : "-");
        results["train"][kind][causal ? "causal" : "non_causal"][std::to_string(n)] = {
            {"us_per_token", point.first}, {"peak_mb", point.second}};
      }
    }
  }

  std::map<std::string, std::map<int64_t, double>> decode;
  std::map<std::string, std::map<int64_t, int64_t>> state_bytes;
  for (const std::string& kind : absl::GetFlag(FLAGS_decode) ? kinds : std::vector<std::string>{}) {
    const model::AttentionCapabilities caps = Make(kind, false)->capabilities();
    if (!caps.causal || !caps.decode) continue;
    const absl::StatusOr<bench::ChildResult> r = RunMeasurement(self, kind + ":decode");
    if (!r.ok()) {
      LOG(WARNING) << "[bench-attention] " << r.status().message();
      continue;
    }
    for (absl::string_view line : absl::StrSplit(r->stdout_text, '\n', absl::SkipEmpty())) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      if (parts.size() != 3) {
        return absl::InternalError(absl::StrCat("bench-attention: the decode child of ", kind,
                                                " printed '", line,
                                                "', not 'position seconds state_bytes'"));
      }
      const int64_t position = std::stoll(parts[0]);
      decode[kind][position] = std::stod(parts[1]) * 1e6;
      state_bytes[kind][position] = std::stoll(parts[2]);
    }
  }
  std::printf("\n%-10s %9s %14s %8s %12s\n", "kind", "position", "decode us/tok", "ratio",
              "state bytes");
  for (const auto& [kind, points] : decode) {
    for (const auto& [position, micros] : points) {
      const double base = decode["softmax"].count(position) ? decode["softmax"][position] : 0;
      const int64_t bytes = state_bytes[kind][position];
      std::printf("%-10s %9lld %14.2f %8s %12lld\n", kind.c_str(), static_cast<long long>(position),
                  micros, base > 0 ? absl::StrFormat("%.2f", micros / base).c_str() : "-",
                  static_cast<long long>(bytes));
      results["decode"][kind][std::to_string(position)] = micros;
      results["decode_state_bytes"][kind][std::to_string(position)] = bytes;
    }
  }
  return bench::WriteJsonIfRequested(results);
}

absl::Status Main() {
  MEMTRAIN_RETURN_IF_ERROR(bench::SetRepetitionDefaults(/*warmup=*/1, /*repeats=*/3));
  at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const std::string measure = absl::GetFlag(FLAGS_measure);
  if (measure.empty()) {
    // A bad --device is reported once, here, not by every child.
    MEMTRAIN_RETURN_IF_ERROR(
        launch::ChooseDeviceForThisMachine(absl::GetFlag(FLAGS_device), 0, 1).status());
    return Parent();
  }
  MEMTRAIN_ASSIGN_OR_RETURN(const launch::DeviceChoice device,
                            launch::ChooseDeviceForThisMachine(absl::GetFlag(FLAGS_device), 0, 1));
  launch::ApplyDeviceChoice(device);
  measured_device = device.device;
  if (measure == "startup") return absl::OkStatus();  // a bare start, with the device's own
  std::vector<std::string> parts = absl::StrSplit(measure, ':');
  if (parts.size() == 2 && parts[1] == "decode") {
    MeasureDecode(parts[0]);
    return absl::OkStatus();
  }
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("--measure=", measure, ": not kind:causal:n, kind:decode or startup"));
  }
  MeasureTrain(parts[0], parts[1] == "1", std::stoll(parts[2]));
  return absl::OkStatus();
}

}  // namespace
}  // namespace memtrain

int main(int argc, char** argv) {
  memtrain::InitBinary(
      argc, argv,
      "Training and decoding cost of every attention kind against softmax.\n"
      "  bench-attention [--json FILE] [--lengths 256,512,...] [--warmup 1 --repeats 3]");
  return memtrain::ExitStatus(memtrain::Main(), "[bench-attention]");
}
