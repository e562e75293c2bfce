// A small job for collective_timeout_test.cpp: every rank all-reduces in a
// loop over the world --collectives makes (mpi, or gloo through the c10d
// adapter); with --fault=stall rank --faulty_rank stops calling collectives
// (sleeps) before collective --fault_at, with --fault=kill it SIGKILLs itself
// there. The surviving ranks must end the job, naming the collective. With
// --fault=hang_in_abort every rank registers a collective that never ends and
// whose backend abort hangs forever: the watchdog's last resort must end it.
// --preemption_request: SIGTERM only asks for a checkpoint, as in
// memtrain-train with --checkpoint_dir (launch/signals.h).
// The all-reduces run in the step phase, judged by --step_timeout; every
// other phase's timeout is a minute, so a report within seconds shows the
// step phase's applied (parallel/collective_phase.h).
#include <ATen/ATen.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "common/binary.h"
#include "glog/logging.h"
#include "launch/signals.h"
#include "parallel/collective_phase.h"
#include "parallel/mpi_runtime.h"
#include "parallel/world.h"

ABSL_FLAG(std::string, fault, "none", "none | stall | kill | hang_in_abort");
ABSL_FLAG(std::string, collectives, "mpi",
          "mpi | gloo: the world's device channel (parallel/world.h).");
ABSL_FLAG(int, faulty_rank, 1, "Rank that misbehaves.");
ABSL_FLAG(int, fault_at, 3, "The faulty rank misbehaves before this (1-based) all-reduce.");
ABSL_FLAG(double, step_timeout, 2.0, "Seconds.");
ABSL_FLAG(int, steps, 5, "All-reduces to run.");
ABSL_FLAG(bool, preemption_request, false,
          "SIGTERM, SIGUSR1 and SIGUSR2 request preemption (launch::InstallPreemptionRequest).");

int main(int argc, char** argv) {
  memtrain::InitBinary(argc, argv, "Fault-injection job for the collective timeout tests.");
  memtrain::parallel::MpiRuntimeOptions runtime_options;
  runtime_options.watchdog.abort_grace = absl::Seconds(3);
  auto runtime = memtrain::parallel::MpiRuntime::Initialize(&argc, &argv, runtime_options);
  CHECK(runtime.ok()) << runtime.status();
  memtrain::launch::InstallTerminationReport((*runtime)->world_rank());
  if (absl::GetFlag(FLAGS_preemption_request)) memtrain::launch::InstallPreemptionRequest();
  memtrain::parallel::WorldOptions options;
  options.communicator.timeouts.startup = absl::Minutes(1);
  options.communicator.timeouts.step = absl::Seconds(absl::GetFlag(FLAGS_step_timeout));
  options.communicator.timeouts.checkpoint = absl::Minutes(1);
  options.communicator.timeouts.evaluation = absl::Minutes(1);
  options.collectives = absl::GetFlag(FLAGS_collectives);
  auto world = memtrain::parallel::CreateWorld(**runtime, options);
  CHECK(world.ok()) << world.status();
  const std::string fault = absl::GetFlag(FLAGS_fault);
  if (fault == "hang_in_abort") {
    (*runtime)->watchdog().Start(
        memtrain::parallel::CollectiveCall{"test", {0, 1}, 1, "never_ends", "-"},
        options.communicator.timeouts.step, [] { return false; },
        [] {
          LOG(INFO) << "[test] the backend's abort hangs";
          std::this_thread::sleep_for(std::chrono::hours(1));
        });
    std::this_thread::sleep_for(std::chrono::seconds(120));
    return 0;
  }
  const memtrain::parallel::ScopedCollectivePhase phase(memtrain::parallel::CollectivePhase::kStep);
  const bool faulty = (*world)->rank() == absl::GetFlag(FLAGS_faulty_rank);
  for (int step = 1; step <= absl::GetFlag(FLAGS_steps); ++step) {
    if (faulty && step == absl::GetFlag(FLAGS_fault_at)) {
      if (fault == "stall") {
        LOG(INFO) << "[test] rank " << (*world)->rank() << " stalls before all-reduce " << step;
        std::this_thread::sleep_for(std::chrono::seconds(120));
      } else if (fault == "kill") {
        LOG(INFO) << "[test] rank " << (*world)->rank() << " kills itself before all-reduce "
                  << step;
        raise(SIGKILL);
      }
    }
    at::Tensor tensor = at::ones({1024});
    const absl::Status reduced = (*world)->allreduce(tensor, memtrain::parallel::ReduceOp::kSum);
    CHECK(reduced.ok()) << reduced;
  }
  LOG(INFO) << "[test] rank " << (*world)->rank() << " finished";
  world->reset();
  return 0;
}
