// anitalker inspect FILE [--json]: every tensor of a checkpoint or
// safetensors file, one per line (key, dtype, shape), or as JSON.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include "checkpoint.h"
#include "error.h"
#include "printable.h"
#include "cli.h"


int cmd_inspect(int argc, char** argv) {
  return cli::run("inspect", [&] {
    std::string file;
    bool json = false;
    cli::Options o("inspect",
                   "Lists every tensor of a torch.save checkpoint (.ckpt, .pth, .bin) or a safetensors file: key, "
                   "dtype (numpy names) and shape, one per line, in file order.  Nested keys are joined with dots "
                   "(params_ema.conv_body_first.weight).  A model folder (chinese-hubert-large/) shows its "
                   "model.safetensors or pytorch_model.bin.");
    o.positional("FILE|FOLDER", &file, "the checkpoint, or a model folder");
    o.flag("json", &json, "print a JSON array of {\"key\", \"dtype\", \"shape\"} instead");
    if (!o.parse(argc, argv)) return 0;
    // A model folder (chinese-hubert-large/): its weights file.
    struct stat st;
    if (::stat(file.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      std::string found;
      for (const char* name : {"model.safetensors", "pytorch_model.bin"}) {
        struct stat f;
        const std::string p = file + (file.back() == '/' ? "" : "/") + name;
        if (::stat(p.c_str(), &f) == 0 && S_ISREG(f.st_mode)) {
          found = p;
          break;
        }
      }
      if (found.empty())
        throw anitalker::Error(anitalker::Error::Kind::NotFound,
                               file + ": a folder without model.safetensors or pytorch_model.bin");
      std::fprintf(stderr, "%s\n", found.c_str());
      file = found;
    }
    auto ckpt = anitalker::Checkpoint::open(file);
    if (json) {
      nlohmann::json out = nlohmann::json::array();
      for (const std::string& k : ckpt->keys()) {
        const anitalker::TensorData& t = ckpt->at(k);
        out.push_back({{"key", k}, {"dtype", anitalker::dtype_name(t.dtype)}, {"shape", t.shape}});
      }
      std::printf("%s\n", out.dump(1).c_str());
    } else {
      // The keys as the file has them, but printable: a downloaded file's
      // key could hold a terminal's escape sequences or a newline that
      // forges a line (found 2026-12-07); --json escapes them its own way.
      std::vector<std::string> shown;
      size_t w = 0;
      for (const std::string& k : ckpt->keys()) {
        shown.push_back(anitalker::printable(k, 4096));
        w = std::max(w, shown.back().size());
      }
      long long params = 0;
      size_t i = 0;
      for (const std::string& k : ckpt->keys()) {
        const anitalker::TensorData& t = ckpt->at(k);
        params += t.numel();
        std::printf("%-*s  %-8s  %s\n", static_cast<int>(w), shown[i++].c_str(), anitalker::dtype_name(t.dtype),
                    anitalker::shape_string(t.shape).c_str());
      }
      std::fprintf(stderr, "%zu tensors, %lld values\n", ckpt->size(), params);
    }
    return 0;
  });
}
