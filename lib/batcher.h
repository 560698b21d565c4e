// In-process dynamic batching, the shape of Triton's dynamic batcher: the
// threads of several pipelines submit requests to one Batcher (one per
// network and device); the first request of a batch waits at most
// `max_delay` for others, or until `max_batch` are queued; the batch runs
// once and every caller gets its own result back, in its own thread.
//
// There is no thread of its own (nothing to start or stop, nothing left
// running when a pipeline goes): the caller whose request is first in the
// queue leads, gathers, runs the batch and wakes the others.  A batch that
// throws is run again one request at a time, so that only the request that
// fails gets the error: one pipeline's bad input does not stop the others.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <vector>

namespace anitalker {

template <class Req, class Res>
class Batcher {
 public:
  // Runs a batch: one result per request, in order.
  using Run = std::function<std::vector<Res>(const std::vector<const Req*>&)>;

  struct Stats {
    uint64_t batches = 0, requests = 0;
    size_t largest = 0;  // the most requests one batch held
  };

  Batcher(Run run, size_t max_batch, std::chrono::microseconds max_delay)
      : run_(std::move(run)), max_batch_(max_batch), max_delay_(max_delay) {
    if (max_batch_ == 0) throw std::invalid_argument("Batcher: max_batch must be at least 1");
  }

  size_t max_batch() const { return max_batch_; }
  std::chrono::microseconds max_delay() const { return max_delay_; }

  // Blocks until this request's result is there; rethrows its error.
  Res submit(const Req& request) {
    Slot slot;
    slot.request = &request;
    std::unique_lock<std::mutex> lock(mutex_);
    queue_.push_back(&slot);
    changed_.notify_all();  // a leader waiting for a full batch
    while (!slot.done) {
      if (!leading_ && queue_.front() == &slot) {
        lead(lock);
        break;
      }
      changed_.wait(lock);
    }
    if (slot.error) std::rethrow_exception(slot.error);
    return std::move(*slot.result);
  }

  Stats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  struct Slot {
    const Req* request = nullptr;
    std::optional<Res> result;
    std::exception_ptr error;
    bool done = false;
  };

  // With the lock held, this thread's request first in the queue.
  void lead(std::unique_lock<std::mutex>& lock) {
    leading_ = true;
    const auto deadline = std::chrono::steady_clock::now() + max_delay_;
    while (queue_.size() < max_batch_ && changed_.wait_until(lock, deadline) != std::cv_status::timeout) {
    }
    std::vector<Slot*> batch;
    while (!queue_.empty() && batch.size() < max_batch_) {
      batch.push_back(queue_.front());
      queue_.pop_front();
    }
    lock.unlock();
    execute(batch);
    lock.lock();
    for (Slot* s : batch) s->done = true;
    ++stats_.batches;
    stats_.requests += batch.size();
    if (batch.size() > stats_.largest) stats_.largest = batch.size();
    leading_ = false;
    changed_.notify_all();
  }

  void execute(const std::vector<Slot*>& batch) {
    std::vector<const Req*> requests;
    for (const Slot* s : batch) requests.push_back(s->request);
    try {
      std::vector<Res> out = run_(requests);
      if (out.size() != batch.size()) throw std::logic_error("Batcher: the batch gave the wrong number of results");
      for (size_t i = 0; i < batch.size(); ++i) batch[i]->result.emplace(std::move(out[i]));
      return;
    } catch (...) {
      if (batch.size() == 1) {
        batch[0]->error = std::current_exception();
        return;
      }
    }
    // One failed the batch: each alone, so that only it fails.
    for (Slot* s : batch) execute({s});
  }

  const Run run_;
  const size_t max_batch_;
  const std::chrono::microseconds max_delay_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Slot*> queue_;
  bool leading_ = false;
  Stats stats_;
};

// The process's batcher of type B for (network, max_batch, max_delay): made
// by `make` the first time, then shared while any caller holds it.
template <class B>
std::shared_ptr<B> shared_batcher(const void* network, size_t max_batch, std::chrono::microseconds max_delay,
                                  const std::function<std::shared_ptr<B>()>& make) {
  using Key = std::tuple<const void*, size_t, int64_t>;
  static std::mutex lock;
  static std::map<Key, std::weak_ptr<B>> batchers;
  std::lock_guard<std::mutex> guard(lock);
  for (auto it = batchers.begin(); it != batchers.end();) it = it->second.expired() ? batchers.erase(it) : std::next(it);
  std::weak_ptr<B>& slot = batchers[Key{network, max_batch, (int64_t)max_delay.count()}];
  if (auto b = slot.lock()) return b;
  std::shared_ptr<B> b = make();
  slot = b;
  return b;
}

}  // namespace anitalker
