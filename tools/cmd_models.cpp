// anitalker models [--models-dir DIR] [--manifest]: the released files the
// project uses (lib/models.h, the one table), which of them a models folder
// has, and the manifest models/fetch.sh downloads from.
#include <sys/stat.h>

#include <cstdio>
#include <string>

#include "cli.h"
#include "models.h"


int cmd_models(int argc, char** argv) {
  return cli::run("models", [&] {
    std::string dir = "models";
    bool manifest = false;
    cli::Options o("models",
                   "Lists the authors' released files under their published names, by group (required: the default "
                   "job; variant: the other stage-2 checkpoints; face-sr: face restoration, and RetinaFace for "
                   "crop=auto), each with what needs it, whether DIR has it, and where it is published.  "
                   "models/fetch.sh downloads them (--all-variants, --face-sr).  Exits 0 when the required files "
                   "are present, 1 otherwise.");
    o.text("models-dir", &dir, "DIR", "the folder to look in");
    o.flag("manifest", &manifest, "print the table as models/manifest.tsv holds it, and nothing else");
    if (!o.parse(argc, argv)) return 0;
    if (dir.empty()) throw cli::UsageError("--models-dir: an empty name; give the folder that holds the released files");
    namespace models = anitalker::models;
    if (manifest) {
      std::fputs(models::manifest().c_str(), stdout);
      return 0;
    }
    // A file named as the folder is a mistake to say, not twelve MISSING
    // lines under it; a folder that does not exist is said first.
    struct stat dst;
    const bool exists = ::stat(dir.c_str(), &dst) == 0;
    if (exists && !S_ISDIR(dst.st_mode))
      throw cli::UsageError("--models-dir " + dir + ": is not a folder; give the folder that holds the released files");
    if (!exists) std::printf("the folder %s does not exist\n", dir.c_str());
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
        const bool found = ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
        // An empty file (a download that never started, a failed copy) is
        // no model: said, and counted as missing (it was "present").
        const bool empty = found && st.st_size == 0;
        const bool have = found && !empty;
        if (!have && r.group == "required") missing_required++;
        std::printf("  %-8s %s  (%s)%s\n", have ? "present" : empty ? "EMPTY" : "MISSING", path.c_str(),
                    r.needed.c_str(),
                    have    ? ""
                    : empty ? ": the file is empty (0 bytes: an interrupted download?)"
                            : models::why_unusable(path).c_str());
        if (!have) std::printf("           from %s\n", r.url.c_str());
      }
    }
    if (missing_required > 0)
      std::printf("%d required file%s missing: models/fetch.sh downloads them (needs network access)\n",
                  missing_required, missing_required == 1 ? "" : "s");
    return missing_required > 0 ? 1 : 0;
  });
}
