// clip-studio's panels (see studio_panels.h): Dear ImGui widgets over plain state, each panel one function;
// requests go out in UiRequests. The run settings' controls are bound to app::RunSettings fields and
// labelled by the settings table.
#include "gui/studio_panels.h"

#include "app/session.h"
#include "app/settings.h"
#include "core/error.h"
#include "generators/generator.h"

#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cfloat>
#include <cstdio>
#include <variant>

namespace clipguide::studio {
namespace {

// A collapsing header, opened or closed first when the script asked for it.
bool header(const char* label, const std::string& key, bool default_open, PanelRequests& panels) {
  auto it = panels.find(key);
  if (it != panels.end()) {
    ImGui::SetNextItemOpen(it->second);
    panels.erase(it);
  }
  return ImGui::CollapsingHeader(label, default_open ? ImGuiTreeNodeFlags_DefaultOpen : 0);
}

// The control of run setting `key`, bound to its field of `s` and labelled as the settings table labels it
// (app/settings.cpp), so a setting shown in the studio is named once. Numbers with a range [lo, hi] are
// sliders (logarithmic: a drag over orders of magnitude); without one, fields applied with Enter, as text is.
// True when the user changed the value.
bool setting_control(app::RunSettings& s, const char* key, double lo = 0, double hi = 0, bool logarithmic = false) {
  const app::Setting* row = app::find_setting(key);
  if (!row || row->label.empty()) throw Error(std::string("studio: no labelled setting '") + key + "'");
  const char* label = row->label.c_str();
  const bool ranged = lo < hi;
  const ImGuiSliderFlags flags = logarithmic ? ImGuiSliderFlags_Logarithmic : 0;
  ImGui::SetNextItemWidth(200);
  if (auto* f = std::get_if<int64_t app::RunSettings::*>(&row->field)) {
    const int64_t min = static_cast<int64_t>(lo), max = static_cast<int64_t>(hi);
    return ranged ? ImGui::SliderScalar(label, ImGuiDataType_S64, &(s.*(*f)), &min, &max)
                  : ImGui::InputScalar(label, ImGuiDataType_S64, &(s.*(*f)), nullptr, nullptr, nullptr,
                                       ImGuiInputTextFlags_EnterReturnsTrue);
  }
  if (auto* f = std::get_if<double app::RunSettings::*>(&row->field)) {
    return ranged ? ImGui::SliderScalar(label, ImGuiDataType_Double, &(s.*(*f)), &lo, &hi, "%.4g", flags)
                  : ImGui::InputDouble(label, &(s.*(*f)), 0.0, 0.0, "%.4g", ImGuiInputTextFlags_EnterReturnsTrue);
  }
  if (auto* f = std::get_if<std::string app::RunSettings::*>(&row->field)) {
    return ImGui::InputText(label, &(s.*(*f)), ImGuiInputTextFlags_EnterReturnsTrue);
  }
  if (auto* f = std::get_if<std::vector<int64_t> app::RunSettings::*>(&row->field)) {
    auto& values = s.*(*f);
    return ImGui::InputScalarN(label, ImGuiDataType_S64, values.data(), static_cast<int>(values.size()), nullptr,
                               nullptr, nullptr, ImGuiInputTextFlags_EnterReturnsTrue);
  }
  throw Error(std::string("studio: setting '") + key + "' has no control");
}

// A combo box over `choices` for the text setting `key` (its field is `value`), labelled by the table.
bool setting_choice(std::string& value, const char* key, const std::vector<std::string>& choices) {
  const app::Setting* row = app::find_setting(key);
  bool changed = false;
  ImGui::SetNextItemWidth(200);
  if (ImGui::BeginCombo(row ? row->label.c_str() : key, value.c_str())) {
    for (const auto& choice : choices) {
      if (ImGui::Selectable(choice.c_str(), value == choice) && value != choice) {
        value = choice;
        changed = true;
      }
    }
    ImGui::EndCombo();
  }
  return changed;
}

constexpr ImGuiWindowFlags kFixed = ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoCollapse;

}  // namespace

void run_panel(const RunView& run, UiRequests& out) {
  out.start |= ImGui::Button(run.has_run ? "Reset" : "Start");
  ImGui::SameLine();
  if (run.running) {
    out.pause |= ImGui::Button("Pause");
  } else {
    out.resume |= ImGui::Button("Resume");
  }
  ImGui::SameLine();
  out.single_step |= ImGui::Button("Step");
  ImGui::SameLine();
  out.take_snapshot |= ImGui::Button("Snapshot");
  ImGui::Text("step %lld   %.2f it/s   loss %.4f", static_cast<long long>(run.step), run.its_per_second, run.loss);
  ImGui::TextDisabled("%s", run.status.c_str());
  ImGui::Separator();
}

void prompts_panel(StudioState& s, PanelRequests& panels, UiRequests& out) {
  if (!header("Prompts", "prompts", true, panels)) return;
  for (int i = 0; i < static_cast<int>(s.prompts.size()); ++i) {
    PromptState& p = s.prompts[i];
    ImGui::PushID(i);
    ImGui::Text("%d %s", i, p.image ? "[image]" : "");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(-60);
    if (ImGui::InputText("##text", &p.text, ImGuiInputTextFlags_EnterReturnsTrue)) out.edited_prompts.push_back(i);
    ImGui::SameLine();
    if (ImGui::SmallButton("remove")) {
      out.removed_prompt = i;
      ImGui::PopID();
      break;
    }
    ImGui::SetNextItemWidth(150);
    float w = p.weight;
    if (ImGui::SliderFloat("weight", &w, -2.0f, 2.0f, "%.2f")) out.prompt_weights.emplace_back(i, w);
    ImGui::SameLine();
    if (ImGui::Checkbox("stop", &p.use_stop)) out.prompt_weights.emplace_back(i, p.weight);
    if (p.use_stop) {
      ImGui::SameLine();
      ImGui::SetNextItemWidth(60);
      if (ImGui::DragFloat("##stop", &p.stop, 0.01f, -1.0f, 2.0f, "%.2f")) out.prompt_weights.emplace_back(i, p.weight);
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
  out.add_prompt |= ImGui::Button("Add") || enter;
}

// A diffusion run's guidance, live (scales, cuts, clamp), and its sampler (at the next start).
void diffusion_panel(app::RunSettings& c, PanelRequests& panels, UiRequests& out) {
  if (!header("Diffusion guidance", "optimisation", true, panels)) return;
  bool changed = setting_control(c, "clip_guidance_scale", 0.0, 100000.0);
  changed |= setting_control(c, "tv_scale", 0.0, 1000.0);
  changed |= setting_control(c, "range_scale", 0.0, 1000.0);
  changed |= setting_control(c, "sat_scale", 0.0, 1000.0);
  changed |= setting_control(c, "clamp_max", 0.0, 1.0);
  changed |= setting_control(c, "cut_overview");
  changed |= setting_control(c, "cut_innercut");
  changed |= setting_control(c, "cut_ic_pow");
  changed |= setting_control(c, "augments");
  out.apply_optimisation |= changed;
  setting_control(c, "steps");
  setting_choice(c.sampler, "sampler", {"ddim", "plms", "ddpm"});
  setting_control(c, "eta", 0.0, 1.0);
  setting_control(c, "skip_steps");
  ImGui::TextDisabled("steps, sampler, eta and skip steps apply at the next start; the frozen brush keeps a region");
}

void optimisation_panel(app::RunSettings& c, PanelRequests& panels, UiRequests& out) {
  if (app::generator_name(c) == app::kDiffusion) return diffusion_panel(c, panels, out);
  if (!header("Optimisation", "optimisation", true, panels)) return;
  bool changed = setting_control(c, "learning_rate", 0.0001, 10.0, /*logarithmic=*/true);
  changed |= setting_control(c, "num_cuts", 1, 128);
  changed |= setting_control(c, "cut_power", 0.1, 3.0);
  changed |= setting_control(c, "cut_min", 0.0, 1.0);
  changed |= setting_choice(c.cut_method, "cut_method", {"random", "latest", "disco"});
  changed |= setting_control(c, "augments");
  changed |= setting_control(c, "tv_weight", 0.0, 10.0);
  out.apply_optimisation |= changed;
}

void setup_panel(StudioState& s, bool has_run, PanelRequests& panels, UiRequests& out) {
  if (!header("Model, generator, size (restart)", "setup", false, panels)) return;
  ImGui::TextUnformatted("CLIP models, one 'path[:weight]' per line:");
  ImGui::InputTextMultiline("##models", &s.models_text, ImVec2(-1, 50));
  ImGui::SetNextItemWidth(-80);
  ImGui::InputText("vocab", &s.config.vocab);
  out.restart_if_running |= setting_choice(s.config.generator, "generator", app::generator_choices());
  ImGui::SetNextItemWidth(-80);
  // The files this generator declared (vqgan: its checkpoint and YAML); none for the pixel generator's kind.
  ImGui::InputText("weights", app::generator_weights_setting(s.config));
  if (std::string* config = app::generator_config_setting(s.config)) {
    ImGui::SetNextItemWidth(-80);
    ImGui::InputText("config", config);
  }
  out.restart_if_running |= setting_control(s.config, "size");
  out.restart_if_running |= setting_control(s.config, "seed");
  ImGui::TextDisabled("generator, size (Enter) and seed (Enter) restart the run");
  const bool differs = model_lines(s.models_text) != s.active.clip_models || s.config.vocab != s.active.vocab ||
                       s.config.generator != s.active.generator ||
                       *app::generator_weights_setting(s.config) != *app::generator_weights_setting(s.active) ||
                       s.config.size != s.active.size || std::max<int64_t>(0, s.config.seed) != s.active.seed;
  if (differs && has_run) ImGui::TextColored(ImVec4(1, 0.8f, 0.3f, 1), "changed: restart to apply");
  out.start |= ImGui::Button("Restart with these settings");
}

void brush_panel(const StudioState& s, BrushState& b, PanelRequests& panels, UiRequests& out) {
  if (!header("Mask brush", "brush", true, panels)) return;
  int target = static_cast<int>(b.target);
  bool changed = ImGui::RadioButton("off", &target, 0);
  ImGui::SameLine();
  changed |= ImGui::RadioButton("prompt region", &target, 1);
  ImGui::SameLine();
  changed |= ImGui::RadioButton("freeze", &target, 2);
  if (changed) out.brush_target = static_cast<BrushTarget>(target);
  if (b.target == BrushTarget::kPromptMask) {
    ImGui::SetNextItemWidth(100);
    if (ImGui::InputInt("prompt", &b.prompt)) {
      b.prompt = std::clamp(b.prompt, 0, std::max(0, static_cast<int>(s.prompts.size()) - 1));
      out.preview_dirty = true;
    }
  }
  ImGui::SetNextItemWidth(150);
  ImGui::SliderFloat("radius", &b.radius, 1.0f, 64.0f, "%.0f px");
  ImGui::SameLine();
  ImGui::Checkbox("erase", &b.erase);
  if (b.target != BrushTarget::kNone && ImGui::Button("Clear mask")) out.clear_mask = b.target;
  ImGui::TextDisabled("drag on the preview to paint");
}

void snapshots_panel(const std::vector<SnapshotInfo>& snapshots, PanelRequests& panels, UiRequests& out) {
  if (!header("Snapshots", "snapshots", false, panels)) return;
  if (snapshots.empty()) ImGui::TextDisabled("none yet: press Snapshot");
  for (const auto& s : snapshots) {
    ImGui::PushID(static_cast<int>(s.id));
    ImGui::Text("#%zu  step %lld", s.id, static_cast<long long>(s.step));
    ImGui::SameLine();
    if (ImGui::SmallButton("go back")) out.restore_snapshot = s.id;
    ImGui::PopID();
  }
}

void output_panel(StudioState& s, PanelRequests& panels, UiRequests& out) {
  if (!header("Save and export", "output", true, panels)) return;
  ImGui::SetNextItemWidth(-110);
  ImGui::InputText("##save", &s.save_path);
  ImGui::SameLine();
  if (ImGui::Button("Save PNG")) out.save_png = s.save_path;
  ImGui::SetNextItemWidth(-110);
  ImGui::InputText("##export", &s.export_stem);
  ImGui::SameLine();
  if (ImGui::Button("Export setup")) out.export_setup = s.export_stem;
  if (!s.exported_command.empty()) {
    ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(0.75f, 0.85f, 1.0f, 1.0f));
    ImGui::TextWrapped("%s", s.exported_command.c_str());
    ImGui::PopStyleColor();
    if (ImGui::SmallButton("Copy command")) ImGui::SetClipboardText(s.exported_command.c_str());
  }
}

void messages_panel(const StudioState& s, PanelRequests& panels) {
  if (!header("Messages", "messages", true, panels)) return;
  ImGui::BeginChild("##messages", ImVec2(0, std::max(90.0f, ImGui::GetContentRegionAvail().y)), true);
  for (const auto& m : s.messages) {
    if (m.rfind("error:", 0) == 0) {
      ImGui::TextColored(ImVec4(1, 0.4f, 0.4f, 1), "%s", m.c_str());
    } else {
      ImGui::TextWrapped("%s", m.c_str());
    }
  }
  if (ImGui::GetScrollY() >= ImGui::GetScrollMaxY()) ImGui::SetScrollHereY(1.0f);
  ImGui::EndChild();
}

void preview_window(float x, float y, float w, float h, const PreviewView& preview, const BrushState& brush,
                    bool busy, UiRequests& out) {
  ImGui::SetNextWindowPos(ImVec2(x, y), ImGuiCond_Always);
  ImGui::SetNextWindowSize(ImVec2(w, h), ImGuiCond_Always);
  ImGui::Begin("Preview", nullptr, kFixed);
  ImVec2 avail = ImGui::GetContentRegionAvail();
  if (preview.texture && preview.width > 0) {
    const float scale = std::max(0.01f, std::min(avail.x / preview.width, avail.y / preview.height));
    const ImVec2 size(preview.width * scale, preview.height * scale);
    ImVec2 pos = ImGui::GetCursorPos();
    ImGui::SetCursorPos(ImVec2(pos.x + (avail.x - size.x) * 0.5f, pos.y + (avail.y - size.y) * 0.5f));
    const ImVec2 origin = ImGui::GetCursorScreenPos();
    ImGui::Image(reinterpret_cast<ImTextureID>(static_cast<intptr_t>(preview.texture)), size);
    if (brush.target != BrushTarget::kNone && ImGui::IsItemHovered()) {
      const ImVec2 m = ImGui::GetMousePos();
      ImGui::GetWindowDrawList()->AddCircle(m, brush.radius * scale, IM_COL32(255, 255, 255, 200));
      if (ImGui::IsMouseDown(ImGuiMouseButton_Left)) {
        out.paint.emplace_back(static_cast<int>((m.x - origin.x) / scale), static_cast<int>((m.y - origin.y) / scale));
      }
    }
    if (brush.dirty && !ImGui::IsMouseDown(ImGuiMouseButton_Left)) out.send_masks = true;  // on release
  } else {
    ImGui::SetCursorPos(ImVec2(avail.x * 0.5f - 120, avail.y * 0.5f));
    ImGui::TextDisabled(busy ? "building the run..." : "add a prompt and press Start");
  }
  ImGui::End();
}

void curves_window(float x, float y, float w, float h, const History& history, const std::vector<PromptState>& prompts) {
  ImGui::SetNextWindowPos(ImVec2(x, y), ImGuiCond_Always);
  ImGui::SetNextWindowSize(ImVec2(w, h), ImGuiCond_Always);
  ImGui::Begin("Loss and similarity", nullptr, kFixed);
  const float plot_w = (ImGui::GetContentRegionAvail().x - 10) * 0.5f;
  auto plot = [&](const char* id, const std::vector<float>& v, const std::string& overlay) {
    if (v.empty()) return;
    ImGui::PlotLines(id, v.data(), static_cast<int>(v.size()), 0, overlay.c_str(), FLT_MAX, FLT_MAX, ImVec2(plot_w, 40));
  };
  char text[128];
  std::snprintf(text, sizeof text, "total loss %.4f", history.total.empty() ? 0.0 : history.total.back());
  plot("##total", history.total, text);
  if (history.total.empty()) ImGui::TextDisabled("curves appear when steps complete");
  int i = 0;
  for (const auto& p : prompts) {
    const std::string& label = p.text;  // GuidePrompt::label(): the text, or the image path
    auto l = history.loss.find(label), s = history.similarity.find(label);
    if (l == history.loss.end()) continue;
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
