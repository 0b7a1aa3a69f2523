// clip-studio's application (see studio_app.h): the settings export, the actions shared by widgets and
// script (the script's interpreter is gui/studio_script.cpp), and the immediate-mode panels (Dear ImGui)
// drawn from StudioState.
// Shapes: H x W pixels.
//
// [SECTION] index
//   [SECTION] export: settings TOML and command line
//   [SECTION] state and actions
//   [SECTION] panels
//   [SECTION] preview and curves
#include "gui/studio_app.h"

#include "app/session.h"

#include "clipnet/error.h"
#include "clipnet/image_io.h"
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

}  // namespace

// =====================================================================================================
// [SECTION] export: settings TOML and command line
// =====================================================================================================

const std::vector<std::string>& studio_setting_keys() {
  static const std::vector<std::string> keys = {
      "prompts", "image_prompts", "size", "seed", "learning_rate", "optimiser", "num_cuts", "cut_power", "cut_min",
      "cut_method", "augments", "tv_weight", "clip_model", "vocab", "generator", "vqgan_config", "vqgan_checkpoint",
      "generator_weights", "generator_option", "device"};
  return keys;
}

app::RunSettings run_settings(const StudioState& s, const std::string& output, int64_t iterations) {
  const app::RunSettings& c = s.config;
  auto tidy = [](float v) { return std::stod(number(v)); };  // 0.7f as 0.7, not 0.699999988
  app::RunSettings r;
  r.prompts = join_specs(s, false);
  r.image_prompts = join_specs(s, true);
  r.iterations = iterations;
  r.size = {s.size[0], s.size[1]};
  r.seed = s.seed;
  r.output = output;
  r.save_every = 50;
  r.learning_rate = s.settings.learning_rate;
  r.optimiser = s.settings.optimizer;
  r.num_cuts = s.cutn;
  r.cut_power = tidy(s.cut_pow);
  r.cut_min = tidy(s.cut_min);
  r.cut_method = s.cut_method;
  r.augments = s.augments;
  r.tv_weight = tidy(s.tv_weight);
  r.clip_models = model_lines(s.models_text);
  r.vocab = c.vocab;
  r.generator = c.generator;
  r.vqgan_checkpoint = c.vqgan_checkpoint;
  r.vqgan_config = c.vqgan_config;
  r.generator_weights = c.generator_weights;
  r.generator_options = c.generator_options;
  r.device = c.device;
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
  s.config = run;  // the run part (models, generator and its files, device) is what config is read for
  s.config.generator = app::generator_name(run);
  s.size[0] = static_cast<int>(run.size.at(0));
  s.size[1] = static_cast<int>(run.size.at(1));
  s.seed = static_cast<int>(std::max<int64_t>(run.seed, 0));
  s.settings.learning_rate = run.learning_rate;
  s.settings.optimizer = run.optimiser;
  s.cutn = static_cast<int>(run.num_cuts);
  s.cut_pow = static_cast<float>(run.cut_power);
  s.cut_min = static_cast<float>(run.cut_min);
  s.cut_method = run.cut_method;
  s.augments = run.augments;
  s.tv_weight = static_cast<float>(run.tv_weight);
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

int64_t StudioApp::image_width() const { return frame_.rgb.defined() ? frame_.rgb.size(1) : state_.size[0]; }
int64_t StudioApp::image_height() const { return frame_.rgb.defined() ? frame_.rgb.size(0) : state_.size[1]; }

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
  return app::guide_options(run_settings(state_, "", 0), static_cast<uint64_t>(std::max(0, state_.seed)));
}

void StudioApp::start() {
  StudioState& s = state_;
  s.config.clip_models = model_lines(s.models_text);
  s.config.size = {s.size[0], s.size[1]};
  s.config.seed = std::max(0, s.seed);
  guidance::GuideOptions options;
  try {
    if (s.size[0] <= 0 || s.size[1] <= 0) throw Error("size must be positive");
    if (s.cutn < 1) throw Error("cutn must be >= 1");
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
  worker_.restart(s.config, guide_prompts(), s.settings, options, /*running=*/true);
  message("started: " + s.config.generator + " " + std::to_string(s.size[0]) + "x" + std::to_string(s.size[1]) +
          ", seed " + std::to_string(s.seed));
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
    if (p.image) clipnet::read_image(spec.text);  // a file CLIP cannot read is reported here, not added
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
  worker_.post([index, weight, stop](guidance::GuideLoop&, guidance::Guide& guide) {
    guide.set_prompt_weight(index, weight, stop);
  });
}

void StudioApp::edit_prompt(int index) {
  if (index < 0 || index >= static_cast<int>(state_.prompts.size())) return;
  sync_prompts();
}

// The whole list, masks included: the run's prompts then mirror the UI's even after an edit failed there.
// Cheap: Guide caches embeddings by text and path, so only new prompts are encoded.
void StudioApp::sync_prompts() {
  worker_.post([prompts = guide_prompts()](guidance::GuideLoop&, guidance::Guide& guide) { guide.set_prompts(prompts); });
}

void StudioApp::apply_optimisation() {
  try {
    guidance::GuideOptions o = guide_options();
    if (!(state_.settings.learning_rate > 0)) throw Error("learning rate must be > 0");
    worker_.update_guide_options(o);
    worker_.update_settings(state_.settings);
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
    worker_.post([m](guidance::GuideLoop& loop, guidance::Guide&) { loop.freeze_region(m); });
  } else {
    const int index = state_.brush.prompt;
    worker_.post([m, index](guidance::GuideLoop&, guidance::Guide& guide) { guide.mask_prompt(index, m); });
  }
}

void StudioApp::clear_mask(BrushTarget target, int prompt) {
  if (target == BrushTarget::kFreeze) {
    state_.freeze_mask.clear();
    worker_.post([](guidance::GuideLoop& loop, guidance::Guide&) { loop.clear_freeze(); });
  } else if (prompt >= 0 && prompt < static_cast<int>(state_.prompts.size())) {
    state_.prompts[prompt].mask.clear();
    worker_.post([prompt](guidance::GuideLoop&, guidance::Guide& guide) { guide.mask_prompt(prompt, at::Tensor()); });
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
    clipnet::write_image(out, chw, {{kSettingsKey, settings_toml(state_, out, std::max<int64_t>(frame_.step, 1))}});
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
// [SECTION] panels
// =====================================================================================================

void StudioApp::draw(int window_width, int window_height) {
  poll_worker();
  upload_preview();
  ++frames_drawn_;
  if (settle_frames_ > 0) --settle_frames_;
  const float side = 400.0f, curves_h = 230.0f;
  const float W = static_cast<float>(window_width), H = static_cast<float>(window_height);
  const ImGuiWindowFlags fixed = ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoCollapse;

  ImGui::SetNextWindowPos(ImVec2(0, 0), ImGuiCond_Always);
  ImGui::SetNextWindowSize(ImVec2(side, H), ImGuiCond_Always);
  ImGui::Begin("clip-studio", nullptr, fixed);
  draw_run_panel();
  draw_prompts_panel();
  draw_optimisation_panel();
  draw_brush_panel();
  draw_snapshots_panel();
  draw_output_panel();
  draw_setup_panel();
  draw_messages_panel();
  ImGui::End();

  draw_preview(side, 0, W - side, H - curves_h);
  draw_curves(side, H - curves_h, W - side, curves_h);
}

bool StudioApp::header(const char* label, const std::string& key, bool default_open) {
  auto it = panel_requests_.find(key);
  if (it != panel_requests_.end()) {
    ImGui::SetNextItemOpen(it->second);
    panel_requests_.erase(it);
  }
  return ImGui::CollapsingHeader(label, default_open ? ImGuiTreeNodeFlags_DefaultOpen : 0);
}

void StudioApp::draw_run_panel() {
  const bool has_run = worker_.has_run(), running = worker_.running();
  if (ImGui::Button(has_run ? "Reset" : "Start")) start();
  ImGui::SameLine();
  if (running) {
    if (ImGui::Button("Pause")) pause();
  } else if (ImGui::Button("Resume")) {
    resume();
  }
  ImGui::SameLine();
  if (ImGui::Button("Step")) single_step();
  ImGui::SameLine();
  if (ImGui::Button("Snapshot")) take_snapshot();
  ImGui::Text("step %lld   %.2f it/s   loss %.4f", static_cast<long long>(frame_.step), frame_.its_per_second,
              frame_.report.total);
  ImGui::TextDisabled("%s", worker_.status().c_str());
  ImGui::Separator();
}

void StudioApp::draw_prompts_panel() {
  if (!header("Prompts", "prompts", true)) return;
  StudioState& s = state_;
  for (int i = 0; i < static_cast<int>(s.prompts.size()); ++i) {
    PromptState& p = s.prompts[i];
    ImGui::PushID(i);
    ImGui::Text("%d %s", i, p.image ? "[image]" : "");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(-60);
    if (ImGui::InputText("##text", &p.text, ImGuiInputTextFlags_EnterReturnsTrue)) edit_prompt(i);
    ImGui::SameLine();
    if (ImGui::SmallButton("remove")) {
      remove_prompt(i);
      ImGui::PopID();
      break;
    }
    ImGui::SetNextItemWidth(150);
    float w = p.weight;
    if (ImGui::SliderFloat("weight", &w, -2.0f, 2.0f, "%.2f")) set_prompt_weight(i, w);
    ImGui::SameLine();
    if (ImGui::Checkbox("stop", &p.use_stop)) set_prompt_weight(i, p.weight);
    if (p.use_stop) {
      ImGui::SameLine();
      ImGui::SetNextItemWidth(60);
      if (ImGui::DragFloat("##stop", &p.stop, 0.01f, -1.0f, 2.0f, "%.2f")) set_prompt_weight(i, p.weight);
    }
    if (!p.mask.empty()) ImGui::TextColored(ImVec4(1, 0.5f, 0.5f, 1), "  masked to a painted region");
    ImGui::PopID();
  }
  ImGui::SetNextItemWidth(-110);
  bool enter = ImGui::InputTextWithHint("##new", s.new_prompt_image ? "image path[:w]" : "text[:weight[:stop]]",
                                        &s.new_prompt, ImGuiInputTextFlags_EnterReturnsTrue);
  ImGui::SameLine();
  ImGui::Checkbox("img", &s.new_prompt_image);
  ImGui::SameLine();
  if (ImGui::Button("Add") || enter) add_prompt();
}

void StudioApp::draw_optimisation_panel() {
  if (!header("Optimisation", "optimisation", true)) return;
  StudioState& s = state_;
  bool changed = false;
  float lr = static_cast<float>(s.settings.learning_rate);
  ImGui::SetNextItemWidth(200);
  if (ImGui::DragFloat("learning rate", &lr, 0.001f, 0.0001f, 10.0f, "%.4f", ImGuiSliderFlags_Logarithmic)) {
    s.settings.learning_rate = lr;
    changed = true;
  }
  ImGui::SetNextItemWidth(200);
  changed |= ImGui::SliderInt("cutn", &s.cutn, 1, 128);
  ImGui::SetNextItemWidth(200);
  changed |= ImGui::SliderFloat("cut_pow", &s.cut_pow, 0.1f, 3.0f, "%.2f");
  ImGui::SetNextItemWidth(200);
  changed |= ImGui::SliderFloat("cut_min", &s.cut_min, 0.0f, 1.0f, "%.2f");
  const char* methods[] = {"random", "latest", "disco"};
  ImGui::SetNextItemWidth(200);
  if (ImGui::BeginCombo("cut method", s.cut_method.c_str())) {
    for (const char* m : methods) {
      if (ImGui::Selectable(m, s.cut_method == m)) {
        s.cut_method = m;
        changed = true;
      }
    }
    ImGui::EndCombo();
  }
  ImGui::SetNextItemWidth(200);
  changed |= ImGui::InputText("augments", &s.augments, ImGuiInputTextFlags_EnterReturnsTrue);
  ImGui::SetNextItemWidth(200);
  changed |= ImGui::DragFloat("tv weight", &s.tv_weight, 0.01f, 0.0f, 10.0f, "%.3f");
  if (changed) apply_optimisation();
}

void StudioApp::draw_setup_panel() {
  if (!header("Model, generator, size (restart)", "setup", false)) return;
  StudioState& s = state_;
  ImGui::TextUnformatted("CLIP models, one 'path[:weight]' per line:");
  ImGui::InputTextMultiline("##models", &s.models_text, ImVec2(-1, 50));
  ImGui::SetNextItemWidth(-80);
  ImGui::InputText("vocab", &s.config.vocab);
  ImGui::SetNextItemWidth(200);
  if (ImGui::BeginCombo("generator", s.config.generator.c_str())) {
    for (const auto& n : generators::GeneratorRegistry::names()) {
      if (ImGui::Selectable(n.c_str(), s.config.generator == n) && s.config.generator != n) {
        s.config.generator = n;
        restart_if_running();
      }
    }
    ImGui::EndCombo();
  }
  ImGui::SetNextItemWidth(-80);
  // The files this generator declared (vqgan: its checkpoint and YAML); none for the pixel generator's kind.
  ImGui::InputText("weights", app::generator_weights_setting(s.config));
  if (std::string* config = app::generator_config_setting(s.config)) {
    ImGui::SetNextItemWidth(-80);
    ImGui::InputText("config", config);
  }
  ImGui::SetNextItemWidth(200);
  if (ImGui::InputInt2("size", s.size, ImGuiInputTextFlags_EnterReturnsTrue)) restart_if_running();
  ImGui::SetNextItemWidth(200);
  if (ImGui::InputInt("seed", &s.seed, 1, 100, ImGuiInputTextFlags_EnterReturnsTrue)) restart_if_running();
  ImGui::TextDisabled("generator, size (Enter) and seed (Enter) restart the run");
  const bool differs = model_lines(s.models_text) != s.active.clip_models || s.config.vocab != s.active.vocab ||
                       s.config.generator != s.active.generator ||
                       *app::generator_weights_setting(s.config) != *app::generator_weights_setting(s.active) ||
                       s.size[0] != s.active.size.at(0) || s.size[1] != s.active.size.at(1) ||
                       std::max(0, s.seed) != s.active.seed;
  if (differs && worker_.has_run()) ImGui::TextColored(ImVec4(1, 0.8f, 0.3f, 1), "changed: restart to apply");
  if (ImGui::Button("Restart with these settings")) start();
}

void StudioApp::draw_brush_panel() {
  if (!header("Mask brush", "brush", true)) return;
  BrushState& b = state_.brush;
  int target = static_cast<int>(b.target);
  bool changed = ImGui::RadioButton("off", &target, 0);
  ImGui::SameLine();
  changed |= ImGui::RadioButton("prompt region", &target, 1);
  ImGui::SameLine();
  changed |= ImGui::RadioButton("freeze", &target, 2);
  if (changed) {
    send_masks();
    b.target = static_cast<BrushTarget>(target);
    preview_dirty_ = true;
  }
  if (b.target == BrushTarget::kPromptMask) {
    ImGui::SetNextItemWidth(100);
    if (ImGui::InputInt("prompt", &b.prompt)) {
      b.prompt = std::clamp(b.prompt, 0, std::max(0, static_cast<int>(state_.prompts.size()) - 1));
      preview_dirty_ = true;
    }
  }
  ImGui::SetNextItemWidth(150);
  ImGui::SliderFloat("radius", &b.radius, 1.0f, 64.0f, "%.0f px");
  ImGui::SameLine();
  ImGui::Checkbox("erase", &b.erase);
  if (b.target != BrushTarget::kNone && ImGui::Button("Clear mask")) clear_mask(b.target, b.prompt);
  ImGui::TextDisabled("drag on the preview to paint");
}

void StudioApp::draw_snapshots_panel() {
  if (!header("Snapshots", "snapshots", false)) return;
  auto snaps = worker_.snapshots();
  if (snaps.empty()) ImGui::TextDisabled("none yet: press Snapshot");
  for (const auto& s : snaps) {
    ImGui::PushID(static_cast<int>(s.id));
    ImGui::Text("#%zu  step %lld", s.id, static_cast<long long>(s.step));
    ImGui::SameLine();
    if (ImGui::SmallButton("go back")) restore_snapshot(s.id);
    ImGui::PopID();
  }
}

void StudioApp::draw_output_panel() {
  if (!header("Save and export", "output", true)) return;
  StudioState& s = state_;
  ImGui::SetNextItemWidth(-110);
  ImGui::InputText("##save", &s.save_path);
  ImGui::SameLine();
  if (ImGui::Button("Save PNG")) save_png(s.save_path);
  ImGui::SetNextItemWidth(-110);
  ImGui::InputText("##export", &s.export_stem);
  ImGui::SameLine();
  if (ImGui::Button("Export setup")) export_setup(s.export_stem);
  if (!s.exported_command.empty()) {
    ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(0.75f, 0.85f, 1.0f, 1.0f));
    ImGui::TextWrapped("%s", s.exported_command.c_str());
    ImGui::PopStyleColor();
    if (ImGui::SmallButton("Copy command")) ImGui::SetClipboardText(s.exported_command.c_str());
  }
}

void StudioApp::draw_messages_panel() {
  if (!header("Messages", "messages", true)) return;
  ImGui::BeginChild("##messages", ImVec2(0, std::max(90.0f, ImGui::GetContentRegionAvail().y)), true);
  for (const auto& m : state_.messages) {
    if (m.rfind("error:", 0) == 0) {
      ImGui::TextColored(ImVec4(1, 0.4f, 0.4f, 1), "%s", m.c_str());
    } else {
      ImGui::TextWrapped("%s", m.c_str());
    }
  }
  if (ImGui::GetScrollY() >= ImGui::GetScrollMaxY()) ImGui::SetScrollHereY(1.0f);
  ImGui::EndChild();
}

// =====================================================================================================
// [SECTION] preview and curves
// =====================================================================================================

void StudioApp::draw_preview(float x, float y, float w, float h) {
  ImGui::SetNextWindowPos(ImVec2(x, y), ImGuiCond_Always);
  ImGui::SetNextWindowSize(ImVec2(w, h), ImGuiCond_Always);
  ImGui::Begin("Preview", nullptr, ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoCollapse);
  ImVec2 avail = ImGui::GetContentRegionAvail();
  if (texture_ && texture_w_ > 0) {
    const float scale = std::max(0.01f, std::min(avail.x / texture_w_, avail.y / texture_h_));
    const ImVec2 size(texture_w_ * scale, texture_h_ * scale);
    ImVec2 pos = ImGui::GetCursorPos();
    ImGui::SetCursorPos(ImVec2(pos.x + (avail.x - size.x) * 0.5f, pos.y + (avail.y - size.y) * 0.5f));
    const ImVec2 origin = ImGui::GetCursorScreenPos();
    ImGui::Image(reinterpret_cast<ImTextureID>(static_cast<intptr_t>(texture_)), size);
    if (state_.brush.target != BrushTarget::kNone && ImGui::IsItemHovered()) {
      const ImVec2 m = ImGui::GetMousePos();
      const float r = state_.brush.radius * scale;
      ImGui::GetWindowDrawList()->AddCircle(m, r, IM_COL32(255, 255, 255, 200));
      if (ImGui::IsMouseDown(ImGuiMouseButton_Left)) {
        paint(static_cast<int>((m.x - origin.x) / scale), static_cast<int>((m.y - origin.y) / scale));
      }
    }
    if (state_.brush.dirty && !ImGui::IsMouseDown(ImGuiMouseButton_Left)) send_masks();  // on release
  } else {
    ImGui::SetCursorPos(ImVec2(avail.x * 0.5f - 120, avail.y * 0.5f));
    ImGui::TextDisabled(worker_.busy() ? "building the run..." : "add a prompt and press Start");
  }
  ImGui::End();
}

void StudioApp::draw_curves(float x, float y, float w, float h) {
  ImGui::SetNextWindowPos(ImVec2(x, y), ImGuiCond_Always);
  ImGui::SetNextWindowSize(ImVec2(w, h), ImGuiCond_Always);
  ImGui::Begin("Loss and similarity", nullptr,
               ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoCollapse);
  const float plot_w = (ImGui::GetContentRegionAvail().x - 10) * 0.5f;
  auto plot = [&](const char* id, const std::vector<float>& v, const std::string& overlay) {
    if (v.empty()) return;
    ImGui::PlotLines(id, v.data(), static_cast<int>(v.size()), 0, overlay.c_str(), FLT_MAX, FLT_MAX, ImVec2(plot_w, 40));
  };
  char text[128];
  std::snprintf(text, sizeof text, "total loss %.4f", history_.total.empty() ? 0.0 : history_.total.back());
  plot("##total", history_.total, text);
  if (history_.total.empty()) ImGui::TextDisabled("curves appear when steps complete");
  int i = 0;
  for (const auto& p : state_.prompts) {
    const std::string& label = p.text;  // GuidePrompt::label(): the text, or the image path
    auto l = history_.loss.find(label), s = history_.similarity.find(label);
    if (l == history_.loss.end()) continue;
    ImGui::PushID(i++);
    std::snprintf(text, sizeof text, "%.28s  loss %.4f", label.c_str(), l->second.back());
    plot("##loss", l->second, text);
    ImGui::SameLine();
    std::snprintf(text, sizeof text, "similarity %.4f", s->second.back());
    plot("##sim", s->second, text);
    ImGui::PopID();
  }
  ImGui::End();
}

}  // namespace clipguide::studio
