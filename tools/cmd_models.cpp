// anitalker models [--models-dir DIR] [--manifest]: the released files the
// project uses (lib/models.h, the one table), which of them a models folder
// has, and the manifest models/fetch.sh downloads from.
#include <sys/stat.h>

#include <cstdio>
#include <string>

#include "cli.h"
#include "models.h"

static const char* kUsage =
    "usage: anitalker models [--models-dir DIR] [--manifest]\n"
    "\n"
    "Lists the authors' released files under their published names, by group\n"
    "(required: the default job; variant: the other stage-2 checkpoints;\n"
    "face-sr: face restoration, and RetinaFace for crop=auto), each with what\n"
    "needs it, whether DIR has it, and where it is published.  models/fetch.sh\n"
    "downloads them (--all-variants, --face-sr).  Exits 0 when the required\n"
    "files are present, 1 otherwise.\n"
    "\n"
    "  --models-dir DIR   the folder to look in (default: models)\n"
    "  --manifest         print the table as models/manifest.tsv holds it, and nothing else\n";

int cmd_models(int argc, char** argv) {
  return cli::run("models", [&] {
    cli::Args a(argc, argv);
    std::string dir = "models";
    bool manifest = false;
    while (!a.done()) {
      const std::string s = a.next();
      if (s == "--help" || s == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (s == "--models-dir") {
        dir = a.value(s);
      } else if (s == "--manifest") {
        manifest = true;
      } else {
        throw cli::UsageError("unknown argument " + s);
      }
    }
    namespace models = anitalker::models;
    if (manifest) {
      std::fputs(models::manifest().c_str(), stdout);
      return 0;
    }
    int missing_required = 0;
    const struct {
      const char* group;
      const char* title;
    } groups[] = {{"required", "required (the default job)"},
                  {"variant", "variant (the other stage-2 checkpoints)"},
                  {"face-sr", "face-sr (face restoration; RetinaFace also for crop=auto)"}};
    for (const auto& g : groups) {
      std::printf("%s:\n", g.title);
      for (const models::Released& r : models::released()) {
        if (r.group != g.group) continue;
        struct stat st;
        const std::string path = dir + "/" + r.path;
        const bool have = ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
        if (!have && r.group == "required") missing_required++;
        std::printf("  %-8s %s  (%s)\n", have ? "present" : "MISSING", path.c_str(), r.needed.c_str());
        if (!have) std::printf("           from %s\n", r.url.c_str());
      }
    }
    if (missing_required > 0)
      std::printf("%d required file%s missing: models/fetch.sh downloads them (needs network access)\n",
                  missing_required, missing_required == 1 ? "" : "s");
    return missing_required > 0 ? 1 : 0;
  });
}
