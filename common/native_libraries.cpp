#include "common/native_libraries.h"

#include <dlfcn.h>
#include <link.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace memtrain {
namespace {

constexpr char kBlasSymbol[] = "sgemm_";
constexpr char kLibTorchCpu[] = "libtorch_cpu.so";

absl::string_view BaseName(absl::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == absl::string_view::npos ? path : path.substr(slash + 1);
}

// Which kind of native library a file is, by its name: BLAS libraries and
// OpenMP runtimes have a handful of well-known names.
bool IsOpenMpRuntime(absl::string_view name) {
  return absl::StartsWith(name, "libgomp") || absl::StartsWith(name, "libomp") ||
         absl::StartsWith(name, "libiomp");
}
bool IsBlas(absl::string_view name) {
  for (absl::string_view prefix :
       {"libopenblas", "libblas", "libblis", "libatlas", "libmkl", "libcblas"}) {
    if (absl::StartsWith(name, prefix)) return true;
  }
  return false;
}

std::vector<std::string> LoadedLibraries() {
  std::vector<std::string> paths;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        if (info->dlpi_name != nullptr && info->dlpi_name[0] != '\0') {
          static_cast<std::vector<std::string>*>(out)->emplace_back(info->dlpi_name);
        }
        return 0;
      },
      &paths);
  return paths;
}

std::string LibraryAt(const void* address) {
  Dl_info info;
  if (address == nullptr || dladdr(address, &info) == 0 || info.dli_fname == nullptr) return "";
  return info.dli_fname;
}

// The last three parts of a path: enough to tell torch/lib from the system.
std::string ShortPath(const std::string& path) {
  std::vector<absl::string_view> parts = absl::StrSplit(path, '/', absl::SkipEmpty());
  if (parts.size() > 3) parts.erase(parts.begin(), parts.end() - 3);
  return absl::StrJoin(parts, "/");
}

}  // namespace

NativeLibraries FindNativeLibraries() {
  NativeLibraries found;
  for (const std::string& path : LoadedLibraries()) {
    const absl::string_view name = BaseName(path);
    if (absl::StartsWith(name, kLibTorchCpu)) found.libtorch_cpu = path;
    if (IsOpenMpRuntime(name)) found.openmp_runtimes.push_back(path);
    if (IsBlas(name)) found.blas_libraries.push_back(path);
  }
  const void* bound = dlsym(RTLD_DEFAULT, kBlasSymbol);
  found.sgemm = LibraryAt(bound);
  if (!found.libtorch_cpu.empty()) {
    void* handle = dlopen(found.libtorch_cpu.c_str(), RTLD_LAZY | RTLD_NOLOAD);
    if (handle != nullptr) {
      const void* own = dlsym(handle, kBlasSymbol);
      found.sgemm_is_libtorchs = own != nullptr && own == bound;
      if (own != nullptr)
        found.blas_libraries.insert(found.blas_libraries.begin(), found.libtorch_cpu);
      dlclose(handle);
    }
  }
  return found;
}

absl::Status CheckLibTorchBlas(const NativeLibraries& libraries) {
  if (!libraries.libtorch_cpu.empty() && !libraries.sgemm_is_libtorchs) {
    return absl::FailedPreconditionError(absl::StrCat(
        "LibTorch's matrix products (", kBlasSymbol, ") bind to ",
        libraries.sgemm.empty() ? std::string("nothing") : libraries.sgemm, " instead of ",
        libraries.libtorch_cpu,
        ": another BLAS was loaded first and every at::mm runs 2-3x slower (docs/ARCHITECTURE.md, "
        "\"One BLAS and one OpenMP runtime per process\")"));
  }
  if (libraries.openmp_runtimes.size() > 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "two OpenMP runtimes in one process: ", absl::StrJoin(libraries.openmp_runtimes, ", "),
        " (their thread pools oversubscribe the cores; docs/ARCHITECTURE.md)"));
  }
  return absl::OkStatus();
}

std::string DescribeNativeLibraries(const NativeLibraries& libraries) {
  std::string blas;
  if (libraries.sgemm.empty()) {
    blas = "none";
  } else {
    blas = absl::StrCat(kBlasSymbol, " -> ", ShortPath(libraries.sgemm),
                        libraries.sgemm_is_libtorchs ? " (LibTorch's own)" : "");
    std::vector<std::string> others;
    for (const std::string& path : libraries.blas_libraries) {
      if (path != libraries.sgemm) others.push_back(ShortPath(path));
    }
    if (!others.empty()) absl::StrAppend(&blas, "; also loaded: ", absl::StrJoin(others, ", "));
  }
  std::vector<std::string> openmp;
  for (const std::string& path : libraries.openmp_runtimes) openmp.push_back(ShortPath(path));
  return absl::StrCat("BLAS ", blas, " | OpenMP ",
                      openmp.empty() ? "none" : absl::StrJoin(openmp, ", "));
}

}  // namespace memtrain
