// anitalker inspect FILE [--json]: every tensor of a checkpoint or
// safetensors file, one per line (key, dtype, shape), or as JSON.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include "checkpoint.h"
#include "error.h"
#include "cli.h"

static const char* kUsage =
    "usage: anitalker inspect FILE|FOLDER [--json]\n"
    "\n"
    "Lists every tensor of a torch.save checkpoint (.ckpt, .pth, .bin) or a\n"
    "safetensors file: key, dtype (numpy names) and shape, one per line, in file\n"
    "order.  Nested keys are joined with dots (params_ema.conv_body_first.weight).\n"
    "A model folder (chinese-hubert-large/) shows its model.safetensors or\n"
    "pytorch_model.bin.\n"
    "\n"
    "  --json   print a JSON array of {\"key\", \"dtype\", \"shape\"} instead\n";

int cmd_inspect(int argc, char** argv) {
  return cli::run("inspect", [&] {
    cli::Args a(argc, argv);
    std::string file;
    bool json = false;
    while (!a.done()) {
      const std::string s = a.next();
      if (s == "--help" || s == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (s == "--json") {
        json = true;
      } else if (!s.empty() && s[0] == '-') {
        throw cli::UsageError("unknown option " + s);
      } else if (file.empty()) {
        file = s;
      } else {
        throw cli::UsageError("one FILE only");
      }
    }
    if (file.empty()) throw cli::UsageError("missing FILE");
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
      size_t w = 0;
      for (const std::string& k : ckpt->keys()) w = std::max(w, k.size());
      long long params = 0;
      for (const std::string& k : ckpt->keys()) {
        const anitalker::TensorData& t = ckpt->at(k);
        params += t.numel();
        std::printf("%-*s  %-8s  %s\n", static_cast<int>(w), k.c_str(), anitalker::dtype_name(t.dtype),
                    anitalker::shape_string(t.shape).c_str());
      }
      std::fprintf(stderr, "%zu tensors, %lld values\n", ckpt->size(), params);
    }
    return 0;
  });
}
