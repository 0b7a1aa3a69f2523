// clip-studio's application: plain state structs, the immediate-mode UI drawn from them each frame (Dear
// ImGui), the actions the widgets and the scripted-input mode share, and the clip-guide settings export
// (TOML as clip-guide's config_to_str writes it, and a command line). No GL window code: see main.cpp.
// Shapes: H x W pixels.
#pragma once

#include "app/settings.h"
#include "gui/worker.h"

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace clipguide::studio {

// What clip-studio starts from: the run settings it shares with clip-guide (flags and --config TOML through
// app/settings.h's table) and its own window and script options.
struct StudioOptions {
  app::RunSettings run;                    // prompts, models, generator, size, seed, optimiser, cutouts, ...
  int window_width = 1280;                 // window size in screen pixels
  int window_height = 800;
  std::string script;                      // scripted-input file (tests); empty: interactive
  std::string screenshot_dir = ".";        // where `screenshot NAME` writes NAME.png
  std::string output_dir = ".";            // default folder of saved PNGs and exports
};

// The run settings clip-studio takes from flags and TOML files (the others are clip-guide's alone).
const std::vector<std::string>& studio_setting_keys();

// One prompt as the UI holds it.
struct PromptState {
  bool image = false;             // text or image (path) prompt
  std::string text;               // the text, or the image path
  float weight = 1.0f;            // negative pushes away
  bool use_stop = false;          // whether `stop` applies
  float stop = 0.0f;              // distance below which the pull stops
  std::vector<float> mask;        // H x W in [0, 1] over the run's image; empty: the whole image
};

// What the brush paints on the preview.
enum class BrushTarget { kNone, kPromptMask, kFreeze };

struct BrushState {
  BrushTarget target = BrushTarget::kNone;  // what a drag on the preview paints
  int prompt = 0;                           // kPromptMask: which prompt
  float radius = 12.0f;                     // in image pixels
  bool erase = false;                       // paint 0 instead of 1
  bool dirty = false;                       // painted since the mask was last sent to the run
};

// Everything the UI edits; the widgets and the script both change it through StudioApp's actions.
struct StudioState {
  // What the next (re)start builds: the models, generator (with its files), size, seed and device of these
  // run settings (app/session.h), and the optimiser and cutout settings the controls edit live: the controls
  // are bound to these fields and labelled by the settings table. Prompts and models are held below in the
  // UI's own form and written into it at the start (models_text) and at export (prompts).
  app::RunSettings config;
  app::RunSettings active;                  // what the current run was built from
  std::vector<PromptState> prompts;
  std::string new_prompt;                   // the "add prompt" field: "text[:weight[:stop]]" or a path
  bool new_prompt_image = false;
  std::string models_text;                  // one "path[:weight]" per line
  BrushState brush;
  std::vector<float> freeze_mask;           // H x W; empty: nothing frozen
  std::string save_path = "studio.png";     // Save PNG target
  std::string export_stem = "studio-setup"; // export writes <stem>.toml and <stem>.sh
  std::string exported_command;             // the last exported command line (shown)
  std::deque<std::string> messages;         // newest last; errors start with "error:"
};

// Loss and similarity curves, by prompt label.
struct History {
  std::vector<float> total;
  std::map<std::string, std::vector<float>> loss, similarity;
  int64_t last_step = -1;
};

// The studio's state as clip-guide's run settings, for `output` and `iterations`.
app::RunSettings run_settings(const StudioState& state, const std::string& output, int64_t iterations);
// The settings as the TOML clip-guide's --config and --from-png read (the same text clip-guide stores in
// its PNGs), for `output` and `iterations`.
std::string settings_toml(const StudioState& state, const std::string& output, int64_t iterations);
// The same settings as a clip-guide command line (shell-quoted).
std::string command_line(const StudioState& state, const std::string& output, int64_t iterations);

// The non-empty lines of a models field, trimmed: "path[:weight]" each.
std::vector<std::string> model_lines(const std::string& text);

struct ScriptCommand;  // gui/studio_script.cpp
struct UiRequests;     // gui/studio_panels.h

// Steady-clock seconds: the script's waits and the frame pacing.
double now_seconds();

class StudioApp {
 public:
  explicit StudioApp(StudioOptions options);
  ~StudioApp();

  // Draws one frame of UI (between ImGui::NewFrame and ImGui::Render); polls the worker first.
  void draw(int window_width, int window_height);
  // Runs script lines until one waits (wait_steps, screenshot) or the script ends. Call once per frame,
  // before draw(). Screenshots are requested through screenshot_request().
  void run_script();
  // A screenshot path the main loop should write after this frame is rendered (then cleared), if any.
  std::optional<std::string> take_screenshot_request();
  bool quit_requested() const { return quit_; }
  // How long the main loop may wait for events (glfwWaitEventsTimeout) before drawing the next frame: a
  // frame interval while the run steps, a script waits or input was just handled; a long nap when paused
  // and idle (the worker wakes the loop with an empty event when it has something new). 0: draw at once.
  double wait_seconds() const;
  // The last wait ended early (input, or the worker): draw a few frames at full rate so ImGui settles.
  void note_activity() { settle_frames_ = 2; }
  // Wakes the main loop from another thread (glfwPostEmptyEvent); the worker calls it.
  void set_wake(std::function<void()> wake) { worker_.set_wake(std::move(wake)); }
  int exit_code() const { return exit_code_; }

  // --- actions: what the widgets do, and what the script calls -------------------------------------
  void start();                                  // (re)builds the run from state_ and runs it
  void restart_if_running();                     // after a generator / size / seed change
  void pause();
  void resume();
  void single_step();
  void add_prompt();                             // from state_.new_prompt / new_prompt_image
  void remove_prompt(int index);
  void set_prompt_weight(int index, float weight);
  void edit_prompt(int index);                   // after the text / stop changed
  void sync_prompts();                           // the UI's prompt list (with masks) to the run
  void apply_optimisation();                     // lr, cutn, cut_pow, method, augments, tv
  void paint(int x, int y);                      // one brush dab at image pixel (x, y)
  void paint_rect(BrushTarget target, int prompt, int x0, int y0, int x1, int y1);
  void send_masks();                             // the brush's mask to the run
  void clear_mask(BrushTarget target, int prompt);
  void take_snapshot();
  void restore_snapshot(size_t id);
  void save_png(const std::string& path);
  void export_setup(const std::string& stem);

  StudioState& state() { return state_; }

 private:
  void poll_worker();
  void upload_preview();
  void message(std::string text);
  // [SECTION] scripted input (gui/studio_script.cpp)
  bool execute(const std::string& line);   // one script line; false: wait and call again
  static const std::map<std::string, ScriptCommand>& script_commands();  // name → arguments, usage, action
  static std::string script_help();        // the command names
  bool script_add_prompt(const std::string& text, bool image);
  void script_brush(const std::vector<std::string>& words);
  void script_set(const std::vector<std::string>& words);
  bool script_panel(const std::string& key, bool open);
  std::vector<guidance::GuidePrompt> guide_prompts() const;
  guidance::GuideOptions guide_options() const;
  std::string resolve(const std::string& path) const;  // relative to output_dir
  int64_t image_width() const;
  int64_t image_height() const;
  std::vector<float>* brush_mask(BrushTarget target, int prompt);

  void perform(const UiRequests& asked);  // what the panels asked for in a frame

  StudioOptions options_;
  StudioState state_;
  History history_;
  Worker worker_;
  Frame frame_;                    // the latest frame the UI has
  unsigned int texture_ = 0;       // GL texture of the preview
  int texture_w_ = 0, texture_h_ = 0;
  bool preview_dirty_ = false;     // frame or masks changed since the last upload

  // scripted input
  std::vector<std::string> script_lines_;
  size_t script_pos_ = 0;
  int64_t wait_until_step_ = -1;   // wait_steps in progress
  int wait_frames_ = 0;
  int frames_drawn_ = 0;
  int settle_frames_ = 3;          // frames still drawn at full rate after activity (and the first layout)
  double count_until_ = 0.0;       // count_frames in progress: its end (steady clock seconds)
  int count_from_ = 0;             // frames_drawn_ when it began
  int64_t count_step_from_ = 0;    // the run's step when it began
  double wait_started_ = 0.0;      // for the script timeout
  std::optional<std::string> screenshot_;
  std::map<std::string, bool> panel_requests_;  // open_panel / close_panel, applied at the next draw (PanelRequests)
  bool quit_ = false;
  int exit_code_ = 0;
};

}  // namespace clipguide::studio
