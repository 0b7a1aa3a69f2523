// clip-studio's application (see studio_app.h): the settings export, the actions shared by widgets and
// script (the script's interpreter is gui/studio_script.cpp), and each frame: the panels
// (gui/studio_panels.cpp, free functions over StudioState) drawn, then what they asked for performed.
// Shapes: H x W pixels.
//
// [SECTION] index
//   [SECTION] export: settings TOML and command line
//   [SECTION] state and actions
//   [SECTION] drawing: the panels (gui/studio_panels.cpp) and what they ask for
#include "gui/studio_app.h"

#include "gui/studio_panels.h"

#include "app/session.h"

#include "core/error.h"
#include "core/image_io.h"
#include "generators/generator.h"
#include "guidance/cutouts.h"
#include "guidance/prompt.h"

#include <ATen/ops/from_blob.h>
#include <GL/gl.h>
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace clipguide::studio {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

namespace {

std::string number(double v) {
  std::ostringstream s;
  s << std::setprecision(6) << v;
  return s.str();
}

std::string prompt_spec(const PromptState& p) {
  std::string s = p.text + ":" + number(p.weight);
  if (p.use_stop) s += ":" + number(p.stop);
  return s;
}

std::string join_specs(const StudioState& state, bool image) {
  std::string out;
  for (const auto& p : state.prompts) {
    if (p.image != image) continue;
    out += (out.empty() ? "" : "|") + prompt_spec(p);
  }
  return out;
}

}  // namespace

std::vector<std::string> model_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    line.erase(0, line.find_first_not_of(" \t\r"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

// =====================================================================================================
// [SECTION] export: settings TOML and command line
// =====================================================================================================

const std::vector<std::string>& studio_setting_keys() {
  static const std::vector<std::string> keys = {
      "prompts", "image_prompts", "size", "seed", "learning_rate", "optimiser", "num_cuts", "cut_power", "cut_min",
      "cut_method", "augments", "tv_weight", "clip_model", "vocab", "generator", "vqgan_config", "vqgan_checkpoint",
      "generator_weights", "generator_option", "device", "diffusion_model", "diffusion_config", "steps", "sampler",
      "eta", "clip_guidance_scale", "tv_scale", "range_scale", "sat_scale", "cut_overview", "cut_innercut",
      "cut_ic_pow", "clamp_max", "skip_steps", "init_image", "init_scale", "cutn_batches"};
  return keys;
}

app::RunSettings run_settings(const StudioState& s, const std::string& output, int64_t iterations) {
  app::RunSettings r;  // clip-guide's defaults, and the studio's own settings from its state
  app::copy_settings(r, s.config, studio_setting_keys());
  r.prompts = join_specs(s, false);
  r.image_prompts = join_specs(s, true);
  r.clip_models = model_lines(s.models_text);
  r.iterations = iterations;
  r.output = output;
  r.save_every = 50;
  return r;
}

std::string settings_toml(const StudioState& s, const std::string& output, int64_t iterations) {
  return app::to_toml(run_settings(s, output, iterations));
}

std::string command_line(const StudioState& s, const std::string& output, int64_t iterations) {
  app::RunSettings base;  // what differs from clip-guide's defaults; the steps and output always
  base.iterations = -1;
  base.output.clear();
  return app::to_command_line(run_settings(s, output, iterations), base);
}

// =====================================================================================================
// [SECTION] state and actions
// =====================================================================================================

StudioApp::StudioApp(StudioOptions options) : options_(std::move(options)) {
  StudioState& s = state_;
  const app::RunSettings& run = options_.run;
  for (const auto& m : run.clip_models) {
    if (!m.empty()) s.models_text += m + "\n";
  }
  s.config = run;
  s.config.generator = app::generator_name(run);
  s.config.seed = std::max<int64_t>(run.seed, 0);
  try {
    for (const auto& spec : guidance::parse_prompts(run.prompts)) {
      s.prompts.push_back({false, spec.text, static_cast<float>(spec.weight), std::isfinite(spec.stop),
                           std::isfinite(spec.stop) ? static_cast<float>(spec.stop) : 0.0f, {}});
    }
    for (const auto& spec : guidance::parse_prompts(run.image_prompts)) {
      s.prompts.push_back({true, spec.text, static_cast<float>(spec.weight), std::isfinite(spec.stop),
                           std::isfinite(spec.stop) ? static_cast<float>(spec.stop) : 0.0f, {}});
    }
  } catch (const std::exception& e) {
    message("error: --prompts: " + error_text(e));
  }
  if (!options_.script.empty()) {
    std::ifstream in(options_.script);
    if (!in) {
      std::cerr << "clip-studio: error: --script: cannot read '" << options_.script << "'\n";
      quit_ = true;
      exit_code_ = 1;
    }
    std::string line;
    while (std::getline(in, line)) {
      line.erase(line.find_last_not_of(" \t\r") + 1);  // scripts written on Windows end lines with \r
      script_lines_.push_back(line);
    }
  }
  if (state_.prompts.empty()) state_.new_prompt = "a red circle";
}

StudioApp::~StudioApp() {
  if (texture_) glDeleteTextures(1, &texture_);
}

void StudioApp::message(std::string text) {
  if (!options_.script.empty() || text.rfind("error:", 0) == 0) std::cerr << "clip-studio: " << text << "\n";
  state_.messages.push_back(std::move(text));
  while (state_.messages.size() > 200) state_.messages.pop_front();
}

std::string StudioApp::resolve(const std::string& path) const {
  std::filesystem::path p(path);
  return p.is_absolute() ? path : (std::filesystem::path(options_.output_dir) / p).string();
}

int64_t StudioApp::image_width() const { return frame_.rgb.defined() ? frame_.rgb.size(1) : state_.config.size.at(0); }
int64_t StudioApp::image_height() const { return frame_.rgb.defined() ? frame_.rgb.size(0) : state_.config.size.at(1); }

std::vector<guidance::GuidePrompt> StudioApp::guide_prompts() const {
  std::vector<guidance::GuidePrompt> out;
  for (const auto& p : state_.prompts) {
    const double stop = p.use_stop ? p.stop : -std::numeric_limits<double>::infinity();
    auto g = p.image ? guidance::GuidePrompt::from_image_file(p.text, p.weight, stop)
                     : guidance::GuidePrompt::from_text(p.text, p.weight, stop);
    if (!p.mask.empty() && static_cast<int64_t>(p.mask.size()) == image_width() * image_height()) {
      g.mask = at::from_blob(const_cast<float*>(p.mask.data()), {image_height(), image_width()}, at::kFloat).clone();
    }
    out.push_back(std::move(g));
  }
  return out;
}

guidance::GuideOptions StudioApp::guide_options() const {
  // The studio's controls as clip-guide's settings, mapped to the Guide as clip-guide maps them.
  return app::guide_options(run_settings(state_, "", 0), static_cast<uint64_t>(std::max<int64_t>(0, state_.config.seed)));
}

void StudioApp::start() {
  StudioState& s = state_;
  s.config.clip_models = model_lines(s.models_text);
  s.config.seed = std::max<int64_t>(0, s.config.seed);
  guidance::GuideOptions options;
  try {
    if (s.config.size.at(0) <= 0 || s.config.size.at(1) <= 0) throw Error("size must be positive");
    if (s.config.num_cuts < 1) throw Error("cutn must be >= 1");
    options = guide_options();
  } catch (const std::exception& e) {
    message("error: start: " + error_text(e));
    return;
  }
  // Masks belong to the old image size; a restart begins without them.
  for (auto& p : s.prompts) p.mask.clear();
  s.freeze_mask.clear();
  s.active = s.config;
  history_ = History{};
  frame_ = Frame{};
  texture_w_ = texture_h_ = 0;  // "building the run..." until its first image
  worker_.restart(s.config, guide_prompts(), app::loop_settings(s.config), options, /*running=*/true);
  message("started: " + s.config.generator + " " + std::to_string(s.config.size[0]) + "x" +
          std::to_string(s.config.size[1]) + ", seed " + std::to_string(s.config.seed));
}

void StudioApp::restart_if_running() {
  if (worker_.has_run() || worker_.busy()) start();
}

void StudioApp::pause() { worker_.set_running(false); }
void StudioApp::resume() {
  if (!worker_.has_run() && !worker_.busy()) return start();
  worker_.set_running(true);
}
void StudioApp::single_step() {
  worker_.set_running(false);
  worker_.single_step();
}

void StudioApp::add_prompt() {
  StudioState& s = state_;
  PromptState p;
  p.image = s.new_prompt_image;
  try {
    guidance::PromptSpec spec = guidance::parse_prompt(s.new_prompt);
    if (p.image) clipguide::read_image(spec.text);  // a file CLIP cannot read is reported here, not added
    p.text = spec.text;
    p.weight = static_cast<float>(spec.weight);
    p.use_stop = std::isfinite(spec.stop);
    p.stop = p.use_stop ? static_cast<float>(spec.stop) : 0.0f;
  } catch (const std::exception& e) {
    message("error: add prompt: " + error_text(e));
    return;
  }
  s.prompts.push_back(p);
  s.new_prompt.clear();
  sync_prompts();
  message("added prompt " + std::to_string(s.prompts.size() - 1) + ": " + prompt_spec(p));
}

void StudioApp::remove_prompt(int index) {
  if (index < 0 || index >= static_cast<int>(state_.prompts.size())) {
    message("error: remove prompt: no prompt " + std::to_string(index));
    return;
  }
  state_.prompts.erase(state_.prompts.begin() + index);
  if (state_.brush.prompt >= static_cast<int>(state_.prompts.size())) state_.brush.prompt = 0;
  sync_prompts();
  preview_dirty_ = true;
}

void StudioApp::set_prompt_weight(int index, float weight) {
  if (index < 0 || index >= static_cast<int>(state_.prompts.size())) {
    message("error: set weight: no prompt " + std::to_string(index));
    return;
  }
  PromptState& p = state_.prompts[index];
  p.weight = weight;
  const double stop = p.use_stop ? p.stop : -std::numeric_limits<double>::infinity();
  worker_.post([index, weight, stop](RunRef run) { run.guide.set_prompt_weight(index, weight, stop); });
}

void StudioApp::edit_prompt(int index) {
  if (index < 0 || index >= static_cast<int>(state_.prompts.size())) return;
  sync_prompts();
}

// The whole list, masks included: the run's prompts then mirror the UI's even after an edit failed there.
// Cheap: Guide caches embeddings by text and path, so only new prompts are encoded.
void StudioApp::sync_prompts() {
  worker_.post([prompts = guide_prompts()](RunRef run) { run.guide.set_prompts(prompts); });
}

void StudioApp::apply_optimisation() {
  try {
    guidance::GuideOptions o = guide_options();
    if (!(state_.config.learning_rate > 0)) throw Error("learning rate must be > 0");
    worker_.update_guide_options(o);
    worker_.update_settings(app::loop_settings(state_.config));
    // A diffusion run's live settings: guidance scales, cut schedules, clamp.
    worker_.post([config = state_.config](RunRef run) {
      if (run.diffusion) run.diffusion->set_settings(config);
    });
  } catch (const std::exception& e) {
    message("error: settings: " + error_text(e));
  }
}

std::vector<float>* StudioApp::brush_mask(BrushTarget target, int prompt) {
  const size_t n = static_cast<size_t>(image_width() * image_height());
  std::vector<float>* mask = nullptr;
  if (target == BrushTarget::kFreeze) mask = &state_.freeze_mask;
  if (target == BrushTarget::kPromptMask && prompt >= 0 && prompt < static_cast<int>(state_.prompts.size())) {
    mask = &state_.prompts[prompt].mask;
  }
  if (mask && mask->size() != n) mask->assign(n, 0.0f);
  return mask;
}

void StudioApp::paint(int cx, int cy) {
  std::vector<float>* mask = brush_mask(state_.brush.target, state_.brush.prompt);
  if (!mask) return;
  const int w = static_cast<int>(image_width()), h = static_cast<int>(image_height());
  const float r = state_.brush.radius;
  const float value = state_.brush.erase ? 0.0f : 1.0f;
  for (int y = std::max(0, int(cy - r)); y <= std::min(h - 1, int(cy + r)); ++y) {
    for (int x = std::max(0, int(cx - r)); x <= std::min(w - 1, int(cx + r)); ++x) {
      if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r) (*mask)[y * w + x] = value;
    }
  }
  state_.brush.dirty = true;
  preview_dirty_ = true;
}

void StudioApp::paint_rect(BrushTarget target, int prompt, int x0, int y0, int x1, int y1) {
  state_.brush.target = target;
  state_.brush.prompt = prompt;
  std::vector<float>* mask = brush_mask(target, prompt);
  if (!mask) {
    message("error: paint: no prompt " + std::to_string(prompt));
    return;
  }
  const int w = static_cast<int>(image_width()), h = static_cast<int>(image_height());
  for (int y = std::max(0, std::min(y0, y1)); y <= std::min(h - 1, std::max(y0, y1)); ++y) {
    for (int x = std::max(0, std::min(x0, x1)); x <= std::min(w - 1, std::max(x0, x1)); ++x) {
      (*mask)[y * w + x] = state_.brush.erase ? 0.0f : 1.0f;
    }
  }
  state_.brush.dirty = true;
  preview_dirty_ = true;
  send_masks();
}

void StudioApp::send_masks() {
  if (!state_.brush.dirty) return;
  state_.brush.dirty = false;
  const int64_t w = image_width(), h = image_height();
  std::vector<float>* mask = brush_mask(state_.brush.target, state_.brush.prompt);
  if (!mask) return;
  at::Tensor m = at::from_blob(mask->data(), {h, w}, at::kFloat).clone();  // (H, W) in [0, 1]
  if (state_.brush.target == BrushTarget::kFreeze) {
    // Frozen: kept as it is (a diffusion run keeps it from its init image or the x0 prediction shown).
    worker_.post([m](RunRef run) {
      if (run.loop) run.loop->freeze_region(m);
      else run.diffusion->set_keep_mask(m);
    });
  } else {
    const int index = state_.brush.prompt;
    worker_.post([m, index](RunRef run) { run.guide.mask_prompt(index, m); });
  }
}

void StudioApp::clear_mask(BrushTarget target, int prompt) {
  if (target == BrushTarget::kFreeze) {
    state_.freeze_mask.clear();
    worker_.post([](RunRef run) {
      if (run.loop) run.loop->clear_freeze();
      else run.diffusion->set_keep_mask({});
    });
  } else if (prompt >= 0 && prompt < static_cast<int>(state_.prompts.size())) {
    state_.prompts[prompt].mask.clear();
    worker_.post([prompt](RunRef run) { run.guide.mask_prompt(prompt, at::Tensor()); });
  }
  preview_dirty_ = true;
}

void StudioApp::take_snapshot() {
  if (!worker_.has_run()) return message("error: snapshot: nothing is running");
  worker_.take_snapshot();
  message("snapshot at step " + std::to_string(frame_.step));
}

void StudioApp::restore_snapshot(size_t id) {
  worker_.restore_snapshot(id);
  message("going back to snapshot #" + std::to_string(id));
}

void StudioApp::save_png(const std::string& path) {
  if (!frame_.rgb.defined()) return message("error: save: no image yet (press Start)");
  const std::string out = resolve(path);
  try {
    at::Tensor chw = frame_.rgb.permute({2, 0, 1}).contiguous();  // (3, H, W) uint8
    clipguide::write_image(out, chw, app::image_metadata(settings_toml(state_, out, std::max<int64_t>(frame_.step, 1)),
                                                         app::run_device(state_.active)));
    message("saved " + out + " (step " + std::to_string(frame_.step) + ")");
  } catch (const std::exception& e) {
    message("error: save " + out + ": " + error_text(e));
  }
}

void StudioApp::export_setup(const std::string& stem) {
  const std::string base = resolve(stem);
  const int64_t iterations = frame_.step > 0 ? frame_.step : 300;
  const std::string output = base + ".png";
  try {
    std::ofstream toml(base + ".toml");
    toml << settings_toml(state_, output, iterations);
    std::ofstream sh(base + ".sh");
    state_.exported_command = command_line(state_, output, iterations);
    sh << "#!/bin/sh\n# clip-studio export: re-renders this setup with clip-guide (masks and live edits are not included)\n"
       << state_.exported_command << "\n";
    if (!toml || !sh) throw Error("cannot write " + base + ".toml / .sh");
    message("exported " + base + ".toml and " + base + ".sh");
  } catch (const std::exception& e) {
    message("error: export: " + error_text(e));
  }
}

void StudioApp::poll_worker() {
  for (auto& e : worker_.take_errors()) message("error: " + e);
  Frame f = worker_.frame();
  if (f.version == frame_.version) return;
  frame_ = std::move(f);
  preview_dirty_ = true;
  if (!frame_.report.prompts.empty() && frame_.step != history_.last_step) {
    history_.last_step = frame_.step;
    auto push = [](std::vector<float>& v, double x) {
      v.push_back(static_cast<float>(x));
      if (v.size() > 1000) v.erase(v.begin());
    };
    push(history_.total, frame_.report.total);
    for (const auto& p : frame_.report.prompts) {
      push(history_.loss[p.label], p.loss);
      push(history_.similarity[p.label], p.similarity);
    }
  }
}

void StudioApp::upload_preview() {
  if (!preview_dirty_ || !frame_.rgb.defined()) return;
  preview_dirty_ = false;
  const int h = static_cast<int>(frame_.rgb.size(0)), w = static_cast<int>(frame_.rgb.size(1));
  std::vector<unsigned char> pixels(frame_.rgb.data_ptr<uint8_t>(), frame_.rgb.data_ptr<uint8_t>() + w * h * 3);
  // The brush target's mask, tinted over the image (red: a prompt's region, blue: frozen).
  const std::vector<float>* mask = nullptr;
  if (state_.brush.target == BrushTarget::kFreeze) mask = &state_.freeze_mask;
  if (state_.brush.target == BrushTarget::kPromptMask && state_.brush.prompt < static_cast<int>(state_.prompts.size())) {
    mask = &state_.prompts[state_.brush.prompt].mask;
  }
  if (mask && mask->size() == static_cast<size_t>(w * h)) {
    const float tint[3] = {state_.brush.target == BrushTarget::kFreeze ? 40.f : 255.f, 40.f,
                           state_.brush.target == BrushTarget::kFreeze ? 255.f : 40.f};
    for (int i = 0; i < w * h; ++i) {
      const float a = 0.45f * (*mask)[i];
      for (int c = 0; c < 3; ++c) pixels[i * 3 + c] = static_cast<unsigned char>(pixels[i * 3 + c] * (1 - a) + tint[c] * a);
    }
  }
  if (!texture_) glGenTextures(1, &texture_);
  glBindTexture(GL_TEXTURE_2D, texture_);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_NEAREST);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
  glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
  glTexImage2D(GL_TEXTURE_2D, 0, GL_RGB, w, h, 0, GL_RGB, GL_UNSIGNED_BYTE, pixels.data());
  texture_w_ = w;
  texture_h_ = h;
}

std::optional<std::string> StudioApp::take_screenshot_request() { return std::exchange(screenshot_, std::nullopt); }

double StudioApp::wait_seconds() const {
  constexpr double kFrame = 1.0 / 60.0;  // live previews and input
  constexpr double kNap = 1.0;           // idle: the worker and input wake the loop earlier
  if (quit_ || screenshot_) return 0.0;
  if (worker_.running() || worker_.busy() || settle_frames_ > 0) return kFrame;
  if (script_pos_ < script_lines_.size()) {
    if (count_until_ > 0.0) return std::clamp(count_until_ - now_seconds(), 0.0, kNap);
    return kFrame;  // a script line waits for frames, a file or the worker: poll
  }
  return kNap;
}

// =====================================================================================================
// [SECTION] drawing: the panels (gui/studio_panels.cpp) and what they ask for
// =====================================================================================================

void StudioApp::draw(int window_width, int window_height) {
  poll_worker();
  upload_preview();
  ++frames_drawn_;
  if (settle_frames_ > 0) --settle_frames_;
  const float side = 400.0f, curves_h = 230.0f;
  const float W = static_cast<float>(window_width), H = static_cast<float>(window_height);
  const ImGuiWindowFlags fixed = ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoCollapse;

  UiRequests asked;
  const RunView run{worker_.has_run(), worker_.running(), worker_.busy(), frame_.step, frame_.its_per_second,
                    frame_.report.total, worker_.status()};
  ImGui::SetNextWindowPos(ImVec2(0, 0), ImGuiCond_Always);
  ImGui::SetNextWindowSize(ImVec2(side, H), ImGuiCond_Always);
  ImGui::Begin("clip-studio", nullptr, fixed);
  run_panel(run, asked);
  prompts_panel(state_, panel_requests_, asked);
  optimisation_panel(state_.config, panel_requests_, asked);
  brush_panel(state_, state_.brush, panel_requests_, asked);
  snapshots_panel(worker_.snapshots(), panel_requests_, asked);
  output_panel(state_, panel_requests_, asked);
  setup_panel(state_, run.has_run, panel_requests_, asked);
  messages_panel(state_, panel_requests_);
  ImGui::End();
  preview_window(side, 0, W - side, H - curves_h, PreviewView{texture_, texture_w_, texture_h_}, state_.brush,
                 run.busy, asked);
  curves_window(side, H - curves_h, W - side, curves_h, history_, state_.prompts);
  perform(asked);
}

// What the panels asked for, with the actions the script uses too, in the order the widgets are drawn.
void StudioApp::perform(const UiRequests& asked) {
  if (asked.start) start();
  if (asked.pause) pause();
  if (asked.resume) resume();
  if (asked.single_step) single_step();
  if (asked.take_snapshot) take_snapshot();
  for (int i : asked.edited_prompts) edit_prompt(i);
  for (const auto& [i, weight] : asked.prompt_weights) set_prompt_weight(i, weight);
  if (asked.removed_prompt) remove_prompt(*asked.removed_prompt);
  if (asked.add_prompt) add_prompt();
  if (asked.apply_optimisation) apply_optimisation();
  if (asked.brush_target) {
    send_masks();  // what was painted for the old target
    state_.brush.target = *asked.brush_target;
    preview_dirty_ = true;
  }
  if (asked.preview_dirty) preview_dirty_ = true;
  if (asked.clear_mask) clear_mask(*asked.clear_mask, state_.brush.prompt);
  if (asked.restore_snapshot) restore_snapshot(*asked.restore_snapshot);
  if (asked.save_png) save_png(*asked.save_png);
  if (asked.export_setup) export_setup(*asked.export_setup);
  if (asked.restart_if_running && !asked.start) restart_if_running();
  for (const auto& [x, y] : asked.paint) paint(x, y);
  if (asked.send_masks) send_masks();
}













}  // namespace clipguide::studio
