// The run-settings table and the command line bound to it (app/settings.h, app/cli.h).
#include "app/cli.h"
#include "app/settings.h"
#include "core/error.h"
#include "generators/generator.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

namespace app = clipguide::app;

namespace {

std::vector<std::string> norm(std::vector<std::string> words) {
  std::vector<const char*> argv{"prog"};
  for (auto& w : words) argv.push_back(w.c_str());
  return app::normalise_args(static_cast<int>(argv.size()), argv.data(), {"--config", "--help"});
}

app::RunSettings parsed(std::vector<std::string> words) {
  app::RunSettings s;
  CLI::App cli;
  app::add_settings(cli, s);
  auto args = norm(std::move(words));
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  cli.parse(reversed);
  return s;
}

// Every setting with a value unlike its default.
app::RunSettings unusual() {
  app::RunSettings s;
  s.prompts = "a \"quoted\" cat:2|dog";
  s.image_prompts = "x.png:0.5";
  s.noise_prompt_seeds = {3, 4};
  s.noise_prompt_weights = {0.5, -1.25};
  s.iterations = 7;
  s.size = {48, 80};
  s.seed = 11;
  s.learning_rate = 0.123456789;
  s.optimiser = "radam";
  s.num_cuts = 5;
  s.cut_power = 0.7;
  s.augments = "Ji,Sh";
  s.init_weight = 0.25;
  s.clip_models = {"a/model", "b/model:0.5"};
  s.generator = "vqgan";
  s.vqgan_checkpoint = "vq.ckpt";
  s.vqgan_config = "vq.yaml";
  s.generator_options = {"k=v", "n=2"};
  s.video = true;
  s.channels_last = true;
  s.zoom_shift_x = -3;
  s.cuda_device = "cuda:1";
  return s;
}

}  // namespace

TEST(RunSettingTable, KeysAndNamesAreUnique) {
  std::set<std::string> seen;
  for (const auto& row : app::run_setting_table()) {
    EXPECT_TRUE(seen.insert("--" + row.key).second) << row.key;
    for (const auto& n : row.names) EXPECT_TRUE(seen.insert(n).second) << n << " of " << row.key;
    EXPECT_FALSE(row.help.empty()) << row.key;
    EXPECT_EQ(app::find_setting(row.key), &row);
    for (const auto& n : row.names) EXPECT_EQ(app::find_setting(n), &row) << n;
  }
}

TEST(RunSettingTable, GeneratorHelpNamesEveryRegisteredGenerator) {
  const std::string& help = app::find_setting("generator")->help;
  const auto names = clipguide::generators::GeneratorRegistry::names();
  ASSERT_GE(names.size(), 5u);
  for (const auto& name : names) EXPECT_NE(help.find(name), std::string::npos) << name << " missing from: " << help;
}

TEST(NormaliseArgs, ReferenceShortsPrefixesEqualsAndJoinedLists) {
  EXPECT_EQ(norm({"-ip", "a.png", "-cuts", "3", "-sd", "42"}),
            (std::vector<std::string>{"--image_prompts", "a.png", "--num_cuts", "3", "--seed", "42"}));
  EXPECT_EQ(norm({"--iter", "5", "--seed=-1", "--cutn=4"}),
            (std::vector<std::string>{"--iterations", "5", "--seed", "-1", "--num_cuts", "4"}));
  // Values are never read as flags: a prompt starting with '-', a negative shift.
  EXPECT_EQ(norm({"-p", "-a dash", "-zsx", "-3"}),
            (std::vector<std::string>{"--prompts", "-a dash", "--zoom_shift_x", "-3"}));
  // -aug takes several values and accumulates over repeats into one list.
  EXPECT_EQ(norm({"-aug", "Ji", "Sh", "-i", "2", "--augments", "Gn"}),
            (std::vector<std::string>{"--iterations", "2", "--augments", "Ji,Sh,Gn"}));
  EXPECT_EQ(norm({"-s", "64", "32", "-nps", "1", "2", "-vid"}),
            (std::vector<std::string>{"--size", "64", "32", "--noise_prompt_seeds", "1", "2", "--video"}));
  // The program's own flags and unknown ones pass through (CLI11 reports the unknown).
  EXPECT_EQ(norm({"--conf", "x.toml", "--bogus", "1"}), (std::vector<std::string>{"--config", "x.toml", "--bogus", "1"}));
  try {
    norm({"--cut", "1"});
    FAIL() << "an ambiguous prefix was accepted";
  } catch (const CLI::ParseError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("ambiguous"), std::string::npos) << what;
    EXPECT_NE(what.find("--cut_power"), std::string::npos) << what;
    EXPECT_NE(what.find("--cut_min"), std::string::npos) << what;
  }
}

TEST(AddSettings, RepeatedScalarsKeepTheLastAndListsAccumulate) {
  auto s = parsed({"-sd", "1", "--seed", "2", "-m", "a", "--clip_model", "b", "-s", "8", "8", "--size", "16", "24"});
  EXPECT_EQ(s.seed, 2);
  EXPECT_EQ(s.clip_models, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(s.size, (std::vector<int64_t>{16, 24}));
}

TEST(RunSettings, CheckCanonicalisesNamesAndNamesTheBadFlag) {
  app::RunSettings s;
  s.optimiser = "AdamW";
  s.cut_method = "updatedpooling";
  app::check(s);
  EXPECT_EQ(s.optimiser, "adamw");
  EXPECT_EQ(s.cut_method, "latest");
  auto message = [](app::RunSettings bad) {
    try {
      app::check(bad);
    } catch (const clipguide::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  app::RunSettings bad;
  bad.noise_prompt_seeds = {1, 2};
  bad.noise_prompt_weights = {1};
  EXPECT_NE(message(bad).find("--noise_prompt_weights"), std::string::npos);
  bad = {};
  bad.optimiser = "sgdd";
  EXPECT_NE(message(bad).find("--optimiser"), std::string::npos);
  bad = {};
  bad.size = {0, 4};
  EXPECT_NE(message(bad).find("--size"), std::string::npos);
}

TEST(RunSettings, DefaultsReadBackFromTheirToml) {
  // Empty number lists (no noise prompts) have no TOML CLI11 reads: a PNG of a plain run must still replay.
  const app::RunSettings defaults;
  const auto file = std::filesystem::temp_directory_path() / "clipguide-settings-defaults.toml";
  std::ofstream(file) << app::to_toml(defaults);
  app::RunSettings back;
  back.iterations = 3;
  app::read_toml(file, back);
  EXPECT_EQ(app::to_toml(back), app::to_toml(defaults));
  EXPECT_TRUE(back.noise_prompt_seeds.empty());
  std::filesystem::remove(file);
}

TEST(RunSettings, TomlRoundTripKeepsEverySetting) {
  const app::RunSettings s = unusual();
  const auto file = std::filesystem::temp_directory_path() / "clipguide-settings-test.toml";
  std::ofstream(file) << app::to_toml(s);
  app::RunSettings back;
  app::read_toml(file, back);
  EXPECT_EQ(app::to_toml(back), app::to_toml(s));
  EXPECT_EQ(back.prompts, s.prompts);
  EXPECT_EQ(back.noise_prompt_weights, s.noise_prompt_weights);
  EXPECT_DOUBLE_EQ(back.learning_rate, s.learning_rate);
  EXPECT_EQ(back.clip_models, s.clip_models);
  EXPECT_EQ(back.generator_options, s.generator_options);
  EXPECT_TRUE(back.video);
  // Unknown keys name the file, unless ignored.
  std::ofstream(file) << "num_cuts=3\nbogus_key=1\n";
  EXPECT_THROW(app::read_toml(file, back), clipguide::Error);
  app::read_toml(file, back, /*ignore_unknown=*/true);
  EXPECT_EQ(back.num_cuts, 3);
  std::filesystem::remove(file);
}

TEST(RunSettings, TomlKeepsAnyUtf8Text) {
  // CLI11's reader cut values at '#' (even inside quotes) and knew no escapes; fuzzing found settings that
  // read in but came back changed. Text with every awkward character survives to_toml and read_toml.
  app::RunSettings s;
  s.prompts = "the #1 hit: \"it's\" a \\ back\tslash\nnew line \x01 \x7f caf\xc3\xa9 \xf0\x9f\x90\x88";
  s.init_image = "C:\\images\\x.png";
  s.generator_options = {"a=#", "b='\"'", "c=,]["};
  app::check(s);
  const auto file = std::filesystem::temp_directory_path() / "clipguide-settings-text.toml";
  std::ofstream(file) << app::to_toml(s);
  app::RunSettings back;
  app::read_toml(file, back);
  EXPECT_EQ(back.prompts, s.prompts);
  EXPECT_EQ(back.init_image, s.init_image);
  EXPECT_EQ(back.generator_options, s.generator_options);
  EXPECT_EQ(app::to_toml(back), app::to_toml(s));
  // Hand-written TOML: literal strings, comments after values, multi-line arrays.
  std::ofstream(file) << "prompts = 'a #2 dog' # the prompt\nsize = [\n  64,\n  32,\n]\nlearning_rate = 1e-2\n";
  app::read_toml(file, back);
  EXPECT_EQ(back.prompts, "a #2 dog");
  EXPECT_EQ(back.size, (std::vector<int64_t>{64, 32}));
  EXPECT_DOUBLE_EQ(back.learning_rate, 0.01);
  std::filesystem::remove(file);
}

TEST(RunSettings, TomlThatIsNotSettingsIsNamed) {
  const auto file = std::filesystem::temp_directory_path() / "clipguide-settings-bad.toml";
  auto message = [&](const std::string& text) {
    std::ofstream(file) << text;
    app::RunSettings back;
    try {
      app::read_toml(file, back);
    } catch (const clipguide::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("prompts = \"unterminated\n").find("line 1"), std::string::npos);
  EXPECT_NE(message("prompts = \"caf\xad\"\n").find("utf-8"), std::string::npos);
  EXPECT_NE(message("num_cuts = 2\n[section]\nx = 1\n").find("'section' is a table"), std::string::npos);
  EXPECT_NE(message("size = [[1, 2]]\n").find("'size' is a nested list"), std::string::npos);
  EXPECT_NE(message("num_cuts = 2\nnum_cuts = 3\n").find("line 2"), std::string::npos);
  EXPECT_NE(message("seed = 1979-05-27\n").find("'seed' is a date"), std::string::npos);
  EXPECT_NE(message("num_cuts = \"many\"\n").find("num_cuts"), std::string::npos);
  EXPECT_NE(message("x=1").find(file.string()), std::string::npos);
  std::filesystem::remove(file);
  // Text that no TOML file can hold is refused by check, naming the setting.
  app::RunSettings bad;
  bad.generator_options = {"ok", "hipped\xad\xad"};
  try {
    app::check(bad);
    ADD_FAILURE() << "invalid UTF-8 accepted";
  } catch (const clipguide::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--generator_option: not UTF-8 text: invalid UTF-8 at byte offset 6 (byte 0xAD"),
              std::string::npos)
        << e.what();
  }
}

TEST(RunSettings, CommandLineHoldsWhatDiffersAndParsesBack) {
  const app::RunSettings s = unusual();
  const std::string line = app::to_command_line(s);
  EXPECT_EQ(line.rfind("clip-guide ", 0), 0u);
  EXPECT_EQ(line.find("--trials"), std::string::npos) << "a default setting was written: " << line;
  // Split the shell words back (single quotes only, as shell_quote writes them).
  std::vector<std::string> words;
  std::string word;
  bool quoted = false, any = false;
  for (size_t i = std::string("clip-guide ").size(); i < line.size(); ++i) {
    const char c = line[i];
    if (c == '\'') {
      quoted = !quoted, any = true;
    } else if (c == '\\' && !quoted && i + 1 < line.size()) {
      word += line[++i];
    } else if (c == ' ' && !quoted) {
      if (any || !word.empty()) words.push_back(word);
      word.clear(), any = false;
    } else {
      word += c;
    }
  }
  if (any || !word.empty()) words.push_back(word);
  EXPECT_EQ(app::to_toml(parsed(words)), app::to_toml(s));
}
