// clip-studio's panels and windows: free functions over the plain state they show and edit (StudioState,
// History, a RunView of the worker). They carry nothing out themselves: what the user asked for in a frame
// is returned in UiRequests, which StudioApp performs after drawing with the same actions the script calls.
// Shapes: H x W pixels.
#pragma once
#include "gui/studio_app.h"
#include "gui/worker.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace clipguide::studio {

// What the run panel shows of the worker.
struct RunView {
  bool has_run = false, running = false, busy = false;
  int64_t step = 0;
  double its_per_second = 0.0, loss = 0.0;
  std::string status;
};

// The preview texture (GL name and size; 0: none yet).
struct PreviewView {
  unsigned int texture = 0;
  int width = 0, height = 0;
};

// What the user asked for in one frame, in the order StudioApp performs it.
struct UiRequests {
  bool start = false, restart_if_running = false, pause = false, resume = false, single_step = false;
  bool take_snapshot = false, apply_optimisation = false, add_prompt = false, send_masks = false;
  bool preview_dirty = false;
  std::vector<int> edited_prompts;                  // text changed (Enter)
  std::vector<std::pair<int, float>> prompt_weights;  // weight (or stop) changed
  std::optional<int> removed_prompt;
  std::optional<BrushTarget> brush_target;          // the masks painted so far are sent before it changes
  std::optional<BrushTarget> clear_mask;            // with the brush's prompt
  std::optional<size_t> restore_snapshot;
  std::vector<std::pair<int, int>> paint;           // brush dabs at image pixels (x, y)
  std::optional<std::string> save_png, export_setup;
};

// The script's open_panel / close_panel requests by panel key; each panel takes its own at its next draw.
using PanelRequests = std::map<std::string, bool>;

void run_panel(const RunView& run, UiRequests& out);
void prompts_panel(StudioState& state, PanelRequests& panels, UiRequests& out);
void optimisation_panel(app::RunSettings& settings, PanelRequests& panels, UiRequests& out);
void setup_panel(StudioState& state, bool has_run, PanelRequests& panels, UiRequests& out);
void brush_panel(const StudioState& state, BrushState& brush, PanelRequests& panels, UiRequests& out);
void snapshots_panel(const std::vector<SnapshotInfo>& snapshots, PanelRequests& panels, UiRequests& out);
void output_panel(StudioState& state, PanelRequests& panels, UiRequests& out);
void messages_panel(const StudioState& state, PanelRequests& panels);

// The image with the brush over it, in the window at (x, y) of size w x h.
void preview_window(float x, float y, float w, float h, const PreviewView& preview, const BrushState& brush,
                    bool busy, UiRequests& out);
// The loss and similarity curves of each prompt.
void curves_window(float x, float y, float w, float h, const History& history, const std::vector<PromptState>& prompts);

}  // namespace clipguide::studio
