// bench::profile: self and total time per LibTorch op over one call, for
// `anitalker bench motion --profile` and `bench sr --profile`.
#include <ATen/ATen.h>
#ifndef ANITALKER_NO_PROFILER
#include <torch/csrc/autograd/profiler_legacy.h>
#endif

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bench_models.h"

namespace bench {

// Self and total time per op over one call of `fn`, from LibTorch's legacy
// profiler (nested ranges per thread: self = total - children).
#ifdef ANITALKER_NO_PROFILER
// LibTorch's legacy profiler API changes between releases; a build against a
// LibTorch it does not fit (tests/device/run.sh) goes without --profile.
void profile(const std::function<void()>&) { std::printf("  --profile: not in this build\n"); }
#else
void profile(const std::function<void()>& fn) {
  using namespace torch::autograd::profiler;
  enableProfilerLegacy(torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU));
  fn();
  thread_event_lists lists = disableProfilerLegacy();
  struct Agg {
    double self = 0, total = 0;
    int calls = 0;
  };
  std::map<std::string, Agg> ops, by_caller;  // by_caller: "op < the top-level op it ran in"
  double all = 0;
  for (const auto& list : lists) {
    struct Open {
      const LegacyEvent* e;
      double children = 0;
    };
    std::vector<Open> stack;
    for (const LegacyEvent& e : list) {
      if (e.kind() == EventKind::PushRange) {
        stack.push_back({&e});
      } else if (e.kind() == EventKind::PopRange && !stack.empty()) {
        const Open o = stack.back();
        stack.pop_back();
        const double us = o.e->cpuElapsedUs(e);
        Agg& a = ops[o.e->name()];
        a.total += us;
        a.self += us - o.children;
        ++a.calls;
        if (!stack.empty()) {
          Agg& c = by_caller[std::string(o.e->name()) + " < " + stack.front().e->name()];
          c.total += us;
          c.self += us - o.children;
          ++c.calls;
        }
        if (!stack.empty()) stack.back().children += us;
        else all += us;
      }
    }
  }
  std::vector<std::pair<std::string, Agg>> v(ops.begin(), ops.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.self > b.second.self; });
  std::printf("  profile of one pass (%.1f ms in top-level ops), by self time:\n", all / 1000);
  std::printf("  %-36s %10s %7s %10s %7s\n", "op", "self ms", "self %", "total ms", "calls");
  for (size_t i = 0; i < v.size() && i < 14; ++i)
    std::printf("  %-36s %10.2f %6.1f%% %10.2f %7d\n", v[i].first.c_str(), v[i].second.self / 1000, 100 * v[i].second.self / all,
                v[i].second.total / 1000, v[i].second.calls);
  // Where the nested ones ran (e.g. which top-level op's copies cost most).
  std::vector<std::pair<std::string, Agg>> c(by_caller.begin(), by_caller.end());
  std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) { return a.second.self > b.second.self; });
  std::printf("  nested ops by the top-level op they ran in, by self time:\n");
  for (size_t i = 0; i < c.size() && i < 8; ++i)
    std::printf("  %-52s %10.2f %6.1f%% %7d\n", c[i].first.c_str(), c[i].second.self / 1000, 100 * c[i].second.self / all,
                c[i].second.calls);
}
#endif

}  // namespace bench
