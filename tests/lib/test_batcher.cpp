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


// The process's batcher for (network, max_batch, max_delay): one while
// someone holds it, another for other settings, a new one once all let go.
TEST(SharedBatcher, OnePerNetworkAndSettingsWhileHeld) {
  int network = 0, other = 0;  // stand for models: only their addresses are the key
  std::atomic<int> calls{0}, made{0};
  using B = Batcher<int, int>;
  const auto make = [&] {
    made++;
    return std::make_shared<B>(doubler(&calls), 4, 5ms);
  };
  auto a = anitalker::shared_batcher<B>(&network, 4, 5ms, make);
  EXPECT_EQ(a, anitalker::shared_batcher<B>(&network, 4, 5ms, make));
  EXPECT_NE(a, anitalker::shared_batcher<B>(&network, 2, 5ms, make));
  EXPECT_NE(a, anitalker::shared_batcher<B>(&network, 4, 6ms, make));
  EXPECT_NE(a, anitalker::shared_batcher<B>(&other, 4, 5ms, make));
  EXPECT_EQ(made.load(), 4);
  const B* before = a.get();
  a.reset();
  auto again = anitalker::shared_batcher<B>(&network, 4, 5ms, make);
  EXPECT_EQ(made.load(), 5);  // made anew (the address may repeat)
  EXPECT_EQ(again->submit(21), 42);
  (void)before;
}
