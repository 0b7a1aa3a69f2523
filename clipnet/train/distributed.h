// Data-parallel training across processes: a Communicator (rank, world size, all_reduce, all_gather,
// broadcast, barrier) over c10d process groups set up from torchrun's environment variables (RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): c10d::TCPStore + ProcessGroupGloo on CPU.
// Shapes: W world size, B per-rank batch, E embedding width.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace clipguide::train {

// Collectives the trainer and the losses need. Every rank must call them in the same order.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int64_t rank() const = 0;
  virtual int64_t world_size() const = 0;
  // In place: x = sum over ranks of x (contiguous CPU tensor).
  virtual void all_reduce_sum_(at::Tensor& x) = 0;
  // (B, ...) on every rank -> (W*B, ...), rank r's rows at [r*B, (r+1)*B). No autograd.
  virtual at::Tensor all_gather(const at::Tensor& x) = 0;
  // In place: x = rank `root`'s x.
  virtual void broadcast_(at::Tensor& x, int64_t root = 0) = 0;
  virtual void barrier() = 0;
  // Human-readable "gloo, rank 0 of 2 (127.0.0.1:29500)".
  virtual std::string describe() const = 0;
};

// The trivial communicator of a single process (world size 1): every collective is the identity.
class SingleProcess final : public Communicator {
 public:
  int64_t rank() const override { return 0; }
  int64_t world_size() const override { return 1; }
  void all_reduce_sum_(at::Tensor&) override {}
  at::Tensor all_gather(const at::Tensor& x) override { return x; }
  void broadcast_(at::Tensor&, int64_t) override {}
  void barrier() override {}
  std::string describe() const override { return "single process"; }
};

// torchrun-style process placement, read from the environment.
struct DistributedEnv {
  int64_t rank = 0;                    // RANK
  int64_t world_size = 1;              // WORLD_SIZE
  int64_t local_rank = 0;              // LOCAL_RANK
  std::string master_addr = "127.0.0.1";  // MASTER_ADDR
  int master_port = 29500;             // MASTER_PORT

  // Unset variables keep the defaults (a single process). Throws Error on unparsable values.
  static DistributedEnv from_environment();
};

// Process group settings.
struct DistributedOptions {
  std::string backend = "auto";                   // "gloo", "nccl" or "auto" (gloo on CPU)
  std::chrono::milliseconds timeout{300'000};     // collective and rendezvous timeout
};

// Single process when env.world_size == 1; otherwise rank 0 hosts a c10d::TCPStore at
// master_addr:master_port, every rank joins it and a ProcessGroupGloo is built over it. Throws Error
// when this build has no c10d Gloo (clipguide built without Gloo's headers) or NCCL is asked for.
std::unique_ptr<Communicator> init_distributed(const DistributedEnv& env, const DistributedOptions& options = {});

// Whether this build can create multi-process groups ("gloo"; "nccl" is not built).
std::vector<std::string> available_backends();

// (B, ...) local rows -> (W*B, ...) gathered rows whose rank slice is `x` itself. with_grad: backward
// sums the gathered gradient over ranks and returns this rank's slice (as torch.distributed.nn.all_gather,
// open_clip's gather_with_grad), so every rank's loss reaches every rank's features; otherwise the other
// ranks' rows are constants (open_clip's default: gathered[rank] = x keeps the local graph).
at::Tensor gather_rows(Communicator& comm, const at::Tensor& x, bool with_grad);

// Sums then divides by W every defined .grad() (one flattened all_reduce per call).
void average_gradients(Communicator& comm, const std::vector<at::Tensor>& parameters);
// Sums every defined .grad() over ranks (one flattened all_reduce; every rank must have the same ones defined).
void sum_gradients(Communicator& comm, const std::vector<at::Tensor>& parameters);

}  // namespace clipguide::train
