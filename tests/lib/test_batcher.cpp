// lib/batcher.h: requests from several threads run in shared batches of at
// most max_batch, each caller gets its own result, a failing request fails
// alone, and nobody waits longer than max_delay for company.
#include <gmock/gmock.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "batcher.h"

using anitalker::Batcher;
using namespace std::chrono_literals;

namespace {

// Doubles each request; a request of -1 throws.
Batcher<int, int>::Run doubler(std::atomic<int>* calls) {
  return [calls](const std::vector<const int*>& batch) {
    ++*calls;
    std::vector<int> out;
    for (const int* r : batch) {
      if (*r == -1) throw std::runtime_error("bad request");
      out.push_back(2 * *r);
    }
    std::this_thread::sleep_for(2ms);  // a batch takes time: others queue meanwhile
    return out;
  };
}

}  // namespace

TEST(Batcher, EveryCallerGetsItsOwnResultInSharedBatches) {
  std::atomic<int> calls{0};
  Batcher<int, int> b(doubler(&calls), 4, 20ms);
  constexpr int kThreads = 6, kEach = 20;
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const int r = 1000 * t + i;
        if (b.submit(r) != 2 * r) ++wrong;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong, 0);
  const auto st = b.stats();
  EXPECT_EQ(st.requests, uint64_t(kThreads * kEach));
  EXPECT_EQ(st.batches, uint64_t(calls.load()));
  EXPECT_LE(st.largest, 4u);          // capped by max_batch
  EXPECT_GT(st.largest, 1u);          // and requests did share batches
  EXPECT_LT(st.batches, st.requests);
}

TEST(Batcher, AFailingRequestFailsAlone) {
  std::atomic<int> calls{0};
  Batcher<int, int> b(doubler(&calls), 8, 50ms);
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 5; ++t)
    threads.emplace_back([&, t] {
      try {
        if (b.submit(t == 2 ? -1 : t) == 2 * t) ++ok;
      } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "bad request");
        ++failed;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok, 4);
  EXPECT_EQ(failed, 1);
  // And the batcher goes on afterwards.
  EXPECT_EQ(b.submit(21), 42);
}

TEST(Batcher, NobodyWaitsLongerThanTheDelay) {
  std::atomic<int> calls{0};
  Batcher<int, int> b(doubler(&calls), 16, 30ms);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(b.submit(5), 10);  // alone: the batch goes after the delay, not when 16 have come
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, 30ms);
  EXPECT_LT(waited, 2s);
  // max_batch 1: no waiting at all.
  Batcher<int, int> one(doubler(&calls), 1, 10s);
  const auto t1 = std::chrono::steady_clock::now();
  EXPECT_EQ(one.submit(3), 6);
  EXPECT_LT(std::chrono::steady_clock::now() - t1, 1s);
}

TEST(Batcher, RefusesAnEmptyBatch) {
  std::atomic<int> calls{0};
  EXPECT_THROW((Batcher<int, int>(doubler(&calls), 0, 1ms)), std::invalid_argument);
}

// Jobs of several threads on one network (shared_jobs): never two at once,
// each runs once, a failing job fails only its caller, and the same key
// gives the same executor while someone holds it.
TEST(SharedJobs, OneAtATimeEachOnceErrorsApart) {
  int network = 0;  // stands for a model: only its address is the key
  auto a = anitalker::shared_jobs(&network, 4, 5ms);
  EXPECT_EQ(a, anitalker::shared_jobs(&network, 4, 5ms));
  EXPECT_NE(a, anitalker::shared_jobs(&network, 2, 5ms));
  std::atomic<int> running{0}, overlap{0}, runs{0};
  auto work = [&] {
    if (running.fetch_add(1) > 0) overlap++;
    std::this_thread::sleep_for(2ms);
    runs++;
    running.fetch_sub(1);
  };
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int t = 0; t < 4; t++)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; i++) {
        try {
          anitalker::run_job(a.get(), [&] {
            work();
            if (t == 3 && i == 5) throw std::runtime_error("bad window");
          });
        } catch (const std::runtime_error&) {
          failed++;
        }
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(overlap.load(), 0);
  EXPECT_EQ(runs.load(), 40);  // no job ran twice, even in the call that failed
  EXPECT_EQ(failed.load(), 1);
  EXPECT_GT(a->stats().largest, 1u);  // the callers' jobs did share calls
  // Without an executor the job runs here.
  int here = 0;
  anitalker::run_job(nullptr, [&] { here++; });
  EXPECT_EQ(here, 1);
}
