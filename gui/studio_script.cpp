// clip-studio's scripted input (StudioApp::run_script): one command per line, run between frames through
// the same actions as the widgets, for tests and demos. The commands are one table (script_commands below):
// a new command is one row. A script error, or a wait longer than 600 s, quits with exit status 1.
#include "gui/studio_app.h"

#include "app/cli.h"
#include "core/error.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace clipguide::studio {
namespace {

std::vector<std::string> split_words(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

}  // namespace

// One script line, split: words[0] is the command; rest is the text after it (prompts keep their spaces).
struct ScriptLine {
  std::vector<std::string> words;
  std::string rest;
  double num(size_t i) const { return std::stod(words.at(i)); }
  int integer(size_t i) const { return std::stoi(words.at(i)); }
};

struct ScriptCommand {
  int args;  // words after the command; -1: any (the command reads `rest` or checks itself)
  const char* usage;
  bool (*run)(StudioApp& app, const ScriptLine& line);  // false: not done yet, called again next frame
};

// The command table: one row per script command, data rather than logic (hence its length).
const std::map<std::string, ScriptCommand>& StudioApp::script_commands() {
  using A = StudioApp;
  using L = ScriptLine;
  static const std::map<std::string, ScriptCommand> table = {
      // prompts
      {"type_prompt", {-1, "TEXT[:weight[:stop]]", [](A& a, const L& l) { return a.script_add_prompt(l.rest, false); }}},
      {"image_prompt", {-1, "PATH[:weight[:stop]]", [](A& a, const L& l) { return a.script_add_prompt(l.rest, true); }}},
      {"set_weight", {2, "I W", [](A& a, const L& l) { return a.set_prompt_weight(l.integer(1), static_cast<float>(l.num(2))), true; }}},
      {"remove_prompt", {1, "I", [](A& a, const L& l) { return a.remove_prompt(l.integer(1)), true; }}},
      // the run
      {"start", {0, "", [](A& a, const L&) { return a.start(), true; }}},
      {"reset", {0, "(as start)", [](A& a, const L&) { return a.start(), true; }}},
      {"pause", {0, "", [](A& a, const L&) { return a.pause(), true; }}},
      {"resume", {0, "", [](A& a, const L&) { return a.resume(), true; }}},
      {"step", {0, "(one step while paused)", [](A& a, const L&) { return a.single_step(), true; }}},
      // optimisation (live) and setup (restarts a running run)
      {"set_lr", {1, "X", [](A& a, const L& l) { return a.state_.config.learning_rate = l.num(1), a.apply_optimisation(), true; }}},
      {"set_cutn", {1, "N", [](A& a, const L& l) { return a.state_.config.num_cuts = l.integer(1), a.apply_optimisation(), true; }}},
      {"set_cut_pow", {1, "X", [](A& a, const L& l) { return a.state_.config.cut_power = l.num(1), a.apply_optimisation(), true; }}},
      {"set_augments", {-1, "LIST", [](A& a, const L& l) { return a.state_.config.augments = l.rest, a.apply_optimisation(), true; }}},
      {"set_seed", {1, "N", [](A& a, const L& l) { return a.state_.config.seed = l.integer(1), a.restart_if_running(), true; }}},
      {"set_size", {2, "W H", [](A& a, const L& l) {
         a.state_.config.size = {l.integer(1), l.integer(2)};
         return a.restart_if_running(), true;
       }}},
      {"set", {-1, "KEY VALUE... (any studio setting as its flag takes it: applied live where it can be, else at the next start)",
               [](A& a, const L& l) { return a.script_set(l.words), true; }}},
      {"set_generator", {1, "NAME", [](A& a, const L& l) { return a.state_.config.generator = l.words[1], a.restart_if_running(), true; }}},
      // masks
      {"brush", {-1, "off | prompt I [RADIUS] | freeze [RADIUS] (then drag on the preview)", [](A& a, const L& l) { return a.script_brush(l.words), true; }}},
      {"paint_mask", {5, "I X0 Y0 X1 Y1 (prompt I's region, image pixels)", [](A& a, const L& l) {
         return a.paint_rect(BrushTarget::kPromptMask, l.integer(1), l.integer(2), l.integer(3), l.integer(4), l.integer(5)), true;
       }}},
      {"freeze", {4, "X0 Y0 X1 Y1", [](A& a, const L& l) {
         return a.paint_rect(BrushTarget::kFreeze, 0, l.integer(1), l.integer(2), l.integer(3), l.integer(4)), true;
       }}},
      {"clear_mask", {1, "I", [](A& a, const L& l) { return a.clear_mask(BrushTarget::kPromptMask, l.integer(1)), true; }}},
      {"clear_freeze", {0, "", [](A& a, const L&) { return a.clear_mask(BrushTarget::kFreeze, 0), true; }}},
      // snapshots and output
      {"snapshot", {0, "", [](A& a, const L&) { return a.take_snapshot(), true; }}},
      {"restore", {1, "K (the K-th snapshot)", [](A& a, const L& l) {
         auto snaps = a.worker_.snapshots();
         const int k = l.integer(1);
         if (k < 0 || k >= static_cast<int>(snaps.size())) return false;  // the snapshot task has not run yet
         return a.restore_snapshot(snaps[k].id), true;
       }}},
      {"save", {1, "FILE", [](A& a, const L& l) { return a.state_.save_path = l.words[1], a.save_png(a.state_.save_path), true; }}},
      {"export", {1, "STEM (STEM.toml and STEM.sh)", [](A& a, const L& l) {
         return a.state_.export_stem = l.words[1], a.export_setup(a.state_.export_stem), true;
       }}},
      {"screenshot", {1, "NAME (screenshot_dir/NAME.png)", [](A& a, const L& l) {
         if (a.frames_drawn_ < 3) return false;  // let the first layout settle
         a.screenshot_ = (std::filesystem::path(a.options_.screenshot_dir) / (l.words[1] + ".png")).string();
         return true;
       }}},
      {"open_panel", {1, "P (prompts optimisation setup brush snapshots output messages)", [](A& a, const L& l) { return a.script_panel(l.words[1], true); }}},
      {"close_panel", {1, "P", [](A& a, const L& l) { return a.script_panel(l.words[1], false); }}},
      // waiting and measuring
      {"wait_steps", {1, "N (N more steps, or until a diffusion run ends)", [](A& a, const L& l) {
         if (a.wait_until_step_ < 0) a.wait_until_step_ = (a.worker_.busy() ? 0 : a.frame_.step) + l.integer(1);
         // A diffusion run that has taken all its steps ends the wait too.
         const bool finished = !a.worker_.running() && a.worker_.status().rfind("finished", 0) == 0;
         if (a.worker_.busy() || (a.frame_.step < a.wait_until_step_ && !finished)) return false;
         return a.wait_until_step_ = -1, true;
       }}},
      {"wait_frames", {1, "N", [](A& a, const L& l) {
         if (a.wait_frames_ == 0) a.wait_frames_ = a.frames_drawn_ + l.integer(1);
         if (a.frames_drawn_ < a.wait_frames_) return false;
         return a.wait_frames_ = 0, true;
       }}},
      {"wait_file", {1, "PATH (until it exists: a test driving the mouse says when it is done)", [](A&, const L& l) {
         return std::filesystem::exists(l.words[1]);
       }}},
      {"count_frames", {1, "S (S seconds left alone, then \"frames: N drawn in S s while running|paused\")", [](A& a, const L& l) {
         if (a.count_until_ == 0.0) {
           a.count_until_ = now_seconds() + l.num(1);
           a.count_from_ = a.frames_drawn_;
           a.count_step_from_ = a.frame_.step;
         }
         if (now_seconds() < a.count_until_) return false;
         a.count_until_ = 0.0;
         a.message("frames: " + std::to_string(a.frames_drawn_ - a.count_from_) + " drawn in " + l.words[1] + " s while " +
                   (a.worker_.running() ? "running" : "paused") + "; steps: " +
                   std::to_string(a.frame_.step - a.count_step_from_));
         return true;
       }}},
      {"quit", {0, "", [](A& a, const L&) { return a.quit_ = true, true; }}},
  };
  return table;
}

std::string StudioApp::script_help() {
  std::string out;
  for (const auto& [name, command] : script_commands()) out += (out.empty() ? "" : ", ") + name;
  return out;
}

bool StudioApp::script_add_prompt(const std::string& text, bool image) {
  state_.new_prompt = text;
  state_.new_prompt_image = image;
  add_prompt();
  return true;
}

void StudioApp::script_set(const std::vector<std::string>& words) {
  if (words.size() < 3) throw Error("set: expected KEY VALUE...");
  const auto& keys = studio_setting_keys();
  if (std::find(keys.begin(), keys.end(), words[1]) == keys.end()) throw Error("set: '" + words[1] + "' is not a studio setting");
  CLI::App cli;
  app::add_settings(cli, state_.config, {words[1]});
  std::vector<std::string> args(words.rbegin(), words.rend() - 2);  // CLI11 takes them last first
  args.push_back("--" + words[1]);
  try {
    cli.parse(args);
  } catch (const CLI::ParseError& e) {
    throw Error("set " + words[1] + ": " + e.what());
  }
  apply_optimisation();
}

void StudioApp::script_brush(const std::vector<std::string>& words) {  // what the brush radio buttons and slider set
  if (words.size() < 2) throw Error("brush: expected off | prompt I [RADIUS] | freeze [RADIUS]");
  send_masks();
  BrushState& b = state_.brush;
  size_t next = 2;
  if (words[1] == "off") {
    b.target = BrushTarget::kNone;
  } else if (words[1] == "freeze") {
    b.target = BrushTarget::kFreeze;
  } else if (words[1] == "prompt") {
    if (words.size() < 3) throw Error("brush prompt: expected the prompt's index");
    b.target = BrushTarget::kPromptMask;
    b.prompt = std::stoi(words[2]);
    next = 3;
  } else {
    throw Error("brush: expected off, prompt or freeze, got '" + words[1] + "'");
  }
  if (words.size() > next) b.radius = std::stof(words[next]);
  preview_dirty_ = true;
}

bool StudioApp::script_panel(const std::string& key, bool open) {
  static const char* keys[] = {"prompts", "optimisation", "setup", "brush", "snapshots", "output", "messages"};
  if (std::find(std::begin(keys), std::end(keys), key) == std::end(keys)) throw Error("no panel '" + key + "'");
  panel_requests_[key] = open;
  return true;
}

bool StudioApp::execute(const std::string& text) {
  ScriptLine line{split_words(text), {}};
  if (line.words.empty() || line.words[0][0] == '#') return true;
  const std::string& cmd = line.words[0];
  line.rest = text.substr(std::min(text.size(), text.find(cmd) + cmd.size() + 1));
  // Errors from the run (a bad prompt, a failed start) fail the script too.
  for (const auto& m : state_.messages) {
    if (m.rfind("error:", 0) == 0) throw Error("the app reported " + m);
  }
  const auto& table = script_commands();
  auto it = table.find(cmd);
  if (it == table.end()) throw Error("unknown command '" + cmd + "' (commands: " + script_help() + ")");
  const ScriptCommand& command = it->second;
  if (command.args >= 0 && line.words.size() != static_cast<size_t>(command.args) + 1) {
    throw Error(cmd + ": expected " + std::to_string(command.args) + " argument(s): " + cmd + " " + command.usage);
  }
  return command.run(*this, line);
}

void StudioApp::run_script() {
  if (script_lines_.empty() || quit_) return;
  poll_worker();
  for (int guard = 0; guard < 100 && script_pos_ < script_lines_.size() && !screenshot_ && !quit_; ++guard) {
    const std::string& line = script_lines_[script_pos_];
    bool done = false;
    try {
      done = execute(line);
    } catch (const std::exception& e) {
      std::cerr << "clip-studio: error: script line " << script_pos_ + 1 << " '" << line << "': " << error_text(e) << "\n";
      quit_ = true;
      exit_code_ = 1;
      return;
    }
    if (!done) {
      if (wait_started_ == 0.0) wait_started_ = now_seconds();
      if (now_seconds() - wait_started_ > 600) {
        std::cerr << "clip-studio: error: script line " << script_pos_ + 1 << " '" << line << "': timed out ("
                  << worker_.status() << ")\n";
        quit_ = true;
        exit_code_ = 1;
      }
      return;
    }
    wait_started_ = 0.0;
    ++script_pos_;
  }
  if (script_pos_ >= script_lines_.size() && !screenshot_) quit_ = true;  // the script ended without quit
}

}  // namespace clipguide::studio
