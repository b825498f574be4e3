// Which instruction sets this CPU (and its operating system) supports; compiled for the baseline.
#include <pybind11/pybind11.h>

namespace py = pybind11;

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "CPU feature detection used to choose fusedrnn's kernel variant.";
  m.def("features", [] {
    py::dict out;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    // libgcc also checks that the OS saves the AVX registers (XGETBV) before reporting AVX2, and the
    // mask and zmm registers before reporting any AVX-512 feature.
    out["avx2"] = static_cast<bool>(__builtin_cpu_supports("avx2"));
    out["fma"] = static_cast<bool>(__builtin_cpu_supports("fma"));
    out["f16c"] = static_cast<bool>(__builtin_cpu_supports("f16c"));
    out["avx512f"] = static_cast<bool>(__builtin_cpu_supports("avx512f"));
    out["avx512vl"] = static_cast<bool>(__builtin_cpu_supports("avx512vl"));
    out["avx512bw"] = static_cast<bool>(__builtin_cpu_supports("avx512bw"));
    out["avx512dq"] = static_cast<bool>(__builtin_cpu_supports("avx512dq"));
#endif
    return out;
  });
}
