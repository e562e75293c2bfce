// ATen's at::parallel_for is a header template: its parallel region is an
// `omp parallel` pragma compiled into the caller's translation unit. Compiled
// without -fopenmp it runs the whole range on the calling thread, silently:
// the exact kNN memory's selection did so until every memtrain target got
// OpenMP through memtrain_options (CMakeLists.txt), as this test does.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <thread>

namespace {

TEST(AtenParallelTest, ParallelForSplitsTheRangeOverThreads) {
  const int previous = at::get_num_threads();
  at::set_num_threads(2);
  std::mutex mutex;
  std::set<std::thread::id> threads;
  int64_t chunks = 0;
  at::parallel_for(0, 1024, /*grain_size=*/1, [&](int64_t begin, int64_t end) {
    std::lock_guard<std::mutex> lock(mutex);
    threads.insert(std::this_thread::get_id());
    ++chunks;
  });
  at::set_num_threads(previous);
  EXPECT_EQ(chunks, 2) << "at::parallel_for ran the range as one chunk: this translation unit "
                          "was compiled without OpenMP";
  EXPECT_EQ(threads.size(), 2u);
}

}  // namespace
