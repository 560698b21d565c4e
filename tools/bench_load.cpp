// anitalker bench load: writes a checkpoint of HuBERT-large's layout and size
// (1.26 GB of float32, random values) and times opening it the way every
// element does: Checkpoint::open, then StateDict::get of every tensor as an
// at::Tensor.  Reports the open time, the time to touch every byte once
// (page cache warm and, where the kernel lets us drop it, cold), and the
// resident memory split into file-backed and anonymous pages: a reader that
// copied the weights would show them as anonymous memory.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <cstdio>
#include <random>

#include "bench_models.h"
#include "bench_util.h"
#include "checkpoint.h"
#include "checkpoint_writer.h"
#include "cli.h"
#include "device.h"
#include "state_dict.h"

namespace {


void drop_cache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

}  // namespace

int bench_load(int argc, char** argv) {
  return cli::run("bench load", [&] {
    std::string file;
    int layers = 24, repeat = 5;
    bool keep = false;
    cli::Options o("bench load",
                   "Writes a float32 checkpoint with the keys and shapes of HuBERT-large (24 layers: 1.26 GB; "
                   "--layers changes the size), then opens it --repeat times and reports the median and min..max "
                   "of:\n  open    Checkpoint::open + StateDict::get of every tensor (at::Tensor views)\n  touch   "
                   "reading every byte once through those tensors (a sum)\nwith the page cache dropped for the file "
                   "before each run (cold) and kept (warm), and the resident memory after loading, file-backed vs "
                   "anonymous.");
    o.text("file", &file, "PATH", "where to write").shows("a temporary file, removed after");
    o.integer("layers", &layers, 1, 48, "N", "transformer layers of the file");
    o.integer("repeat", &repeat, 1, 100, "N", "runs");
    o.flag("keep", &keep, "keep the file");
    if (!o.parse(argc, argv)) return 0;
    if (file.empty()) {
      file = bench::temp_path("load") + ".bin";
    } else {
      // The file is this run's own, written and then removed: never one
      // that is there already (a model, a link, a pipe: it was replaced,
      // then deleted without a word, found 2026-12-07).
      struct stat st;
      if (::lstat(file.c_str(), &st) == 0)
        throw cli::UsageError("--file " + file +
                              " exists: bench load writes a new checkpoint there and removes it after (unless --keep); "
                              "name a path where nothing is");
    }
    // Removed however the run ends (an error, an exception), unless --keep.
    struct Remove {
      const std::string& path;
      const bool& keep;
      ~Remove() {
        if (!keep) std::remove(path.c_str());
      }
    } remove_after{file, keep};

    // HuBERT-large (chinese-hubert-large) keys and shapes.
    bench::RandomCheckpoint ck;
    bench::write_hubert_large("", layers, &ck);
    const std::vector<anitalker::TensorToWrite>& ts = ck.tensors;
    const int64_t values = ck.values();
    double t0 = bench::now_s();
    anitalker::write_checkpoint(file, ts);
    const double t_write = bench::now_s() - t0;
    const size_t n_tensors = ts.size();
    ck = bench::RandomCheckpoint();
    const double gb = static_cast<double>(values) * 4 / 1e9;
    std::printf("# anitalker bench load: %s\n", anitalker::torch_info().c_str());
    std::printf("file: %zu tensors, %.3f GB (%lld values), written in %.2f s\n", n_tensors, gb,
                static_cast<long long>(values), t_write);

    const cli::Memory m0 = cli::memory();
    cli::Memory m_loaded;
    for (int cold = 1; cold >= 0; --cold) {
      std::vector<double> t_open, t_touch;
      for (int r = 0; r < repeat; ++r) {
        if (cold) drop_cache(file);
        t0 = bench::now_s();
        auto ckpt = anitalker::Checkpoint::open(file);
        anitalker::StateDict sd(ckpt);
        std::vector<at::Tensor> tensors;
        for (const std::string& k : sd.keys()) tensors.push_back(sd.get(k, sd.shape(k)));
        const double t1 = bench::now_s();
        double sum = 0;
        for (const at::Tensor& t : tensors) sum += t.sum().item<double>();
        const double t2 = bench::now_s();
        if (sum == 12345.678) std::printf(" ");  // keep the sum alive
        t_open.push_back(t1 - t0);
        t_touch.push_back(t2 - t1);
        if (r == 0 && !cold) m_loaded = cli::memory();
      }
      const bench::Stats so = bench::stats(t_open), st = bench::stats(t_touch);
      std::printf("%-5s open  %8.4f s  [%.4f .. %.4f]   touch %7.3f s [%.3f .. %.3f]   (%.2f GB/s)\n",
                  cold ? "cold" : "warm", so.median, so.min, so.max, st.median, st.min, st.max, gb / st.median);
    }
    std::printf("memory after loading (warm, all tensors held and read): rss %.0f MB = file-backed %.0f MB + anonymous %.0f MB "
                "(anonymous before loading: %.0f MB)\n",
                m_loaded.rss / 1e6, m_loaded.file / 1e6, m_loaded.anon / 1e6, m0.anon / 1e6);
    return 0;
  });
}
