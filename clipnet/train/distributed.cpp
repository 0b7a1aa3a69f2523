// c10d process groups from torchrun's environment, and the autograd-aware gather the losses use.
// Gloo comes from LibTorch's libtorch_cpu (its C++ API is exported); its headers are not in the wheel, so
// this file compiles the Gloo path only when CMake found gloo's headers (Debian: libgloo-dev).
#include "clipnet/train/distributed.h"

#include "core/error.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdlib>
#include <stdexcept>

#if CLIPGUIDE_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace clipguide::train {
namespace {

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  try {
    size_t used = 0;
    const int64_t x = std::stoll(v, &used);
    if (used != std::string(v).size()) throw std::invalid_argument(v);
    return x;
  } catch (const std::exception&) {
    throw Error(std::string("environment variable ") + name + "='" + v + "' is not an integer");
  }
}

#if CLIPGUIDE_HAVE_GLOO
class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(const DistributedEnv& env, const DistributedOptions& options) : env_(env) {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(env.master_port);
    // Under torchrun the elastic agent already serves the store at MASTER_PORT (as torch's
    // _create_c10d_store does, every rank is then a client).
    const char* agent_store = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
    const bool agent = agent_store != nullptr && std::string(agent_store) == "True";
    store_options.isServer = env.rank == 0 && !agent;
    store_options.numWorkers = static_cast<size_t>(env.world_size);
    store_options.waitWorkers = false;
    store_options.timeout = options.timeout;
    store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
    // Options::create + the default device is what create_default() (newer LibTorch) does; works on 2.4 too.
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
    gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, static_cast<int>(env.rank),
                                                         static_cast<int>(env.world_size), gloo_options);
  }
  int64_t rank() const override { return env_.rank; }
  int64_t world_size() const override { return env_.world_size; }
  void all_reduce_sum_(at::Tensor& x) override {
    std::vector<at::Tensor> tensors{x};
    group_->allreduce(tensors)->wait();
  }
  at::Tensor all_gather(const at::Tensor& x) override {
    const at::Tensor local = x.detach().contiguous();
    std::vector<at::Tensor> inputs{local};
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int64_t r = 0; r < env_.world_size; ++r) outputs[0].push_back(at::empty_like(local));
    group_->allgather(outputs, inputs)->wait();
    return at::cat(outputs[0], 0);
  }
  void broadcast_(at::Tensor& x, int64_t root) override {
    std::vector<at::Tensor> tensors{x};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    group_->broadcast(tensors, o)->wait();
  }
  void barrier() override { group_->barrier()->wait(); }
  std::string describe() const override {
    return "gloo, rank " + std::to_string(env_.rank) + " of " + std::to_string(env_.world_size) + " (" +
           env_.master_addr + ":" + std::to_string(env_.master_port) + ")";
  }

 private:
  DistributedEnv env_;
  c10::intrusive_ptr<c10d::TCPStore> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};
#endif

// all_gather whose backward sums the gathered gradient over ranks and keeps this rank's slice.
// ref: pytorch torch/distributed/nn/functional.py (_AllGather: backward is a reduce_scatter with SUM)
struct GatherWithGrad : public torch::autograd::Function<GatherWithGrad> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, Communicator* comm) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    ctx->saved_data["rows"] = x.size(0);
    return comm->all_gather(x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    const int64_t rows = ctx->saved_data["rows"].toInt();
    at::Tensor g = grads[0].contiguous().clone();  // (N, E)
    comm->all_reduce_sum_(g);
    return {g.narrow(0, rows * comm->rank(), rows), at::Tensor()};
  }
};

}  // namespace

DistributedEnv DistributedEnv::from_environment() {
  DistributedEnv env;
  env.rank = env_int("RANK", 0);
  env.world_size = env_int("WORLD_SIZE", 1);
  env.local_rank = env_int("LOCAL_RANK", 0);
  if (const char* a = std::getenv("MASTER_ADDR"); a != nullptr && *a != '\0') env.master_addr = a;
  env.master_port = static_cast<int>(env_int("MASTER_PORT", 29500));
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size)
    throw Error("bad torchrun environment: RANK=" + std::to_string(env.rank) +
                " WORLD_SIZE=" + std::to_string(env.world_size));
  return env;
}

std::vector<std::string> available_backends() {
#if CLIPGUIDE_HAVE_GLOO
  return {"gloo"};
#else
  return {};
#endif
}

std::unique_ptr<Communicator> init_distributed(const DistributedEnv& env, const DistributedOptions& options) {
  if (options.backend != "auto" && options.backend != "gloo")
    throw Error("distributed backend '" + options.backend + "' is not built (available: gloo)");
  if (env.world_size == 1) return std::make_unique<SingleProcess>();
#if CLIPGUIDE_HAVE_GLOO
  try {
    return std::make_unique<GlooCommunicator>(env, options);
  } catch (const std::exception& e) {
    throw Error("cannot join process group at " + env.master_addr + ":" + std::to_string(env.master_port) +
                " as rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) + ": " +
                error_text(e));
  }
#else
  throw Error("this clipguide was built without c10d Gloo (gloo headers not found): WORLD_SIZE=" +
              std::to_string(env.world_size) + " needs it");
#endif
}

at::Tensor gather_rows(Communicator& comm, const at::Tensor& x, bool with_grad) {
  if (comm.world_size() == 1) return x;
  if (with_grad) return GatherWithGrad::apply(x, &comm);
  // Other ranks' rows are constants; this rank's slice is x itself, keeping its graph.
  at::Tensor all = comm.all_gather(x);  // (N, E)
  const int64_t rows = x.size(0);
  std::vector<at::Tensor> parts;
  if (comm.rank() > 0) parts.push_back(all.narrow(0, 0, rows * comm.rank()));
  parts.push_back(x);
  const int64_t after = all.size(0) - rows * (comm.rank() + 1);
  if (after > 0) parts.push_back(all.narrow(0, rows * (comm.rank() + 1), after));
  return at::cat(parts, 0);
}

namespace {

// One flattened all_reduce of the defined gradients of `parameters`, then divided by `divisor`.
void reduce_gradients(Communicator& comm, const std::vector<at::Tensor>& parameters, double divisor) {
  if (comm.world_size() == 1) return;
  std::vector<at::Tensor> grads;
  for (const auto& p : parameters)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return;
  std::vector<at::Tensor> flat_parts;
  for (const auto& g : grads) flat_parts.push_back(g.reshape({-1}));
  at::Tensor flat = at::cat(flat_parts).contiguous();
  comm.all_reduce_sum_(flat);
  if (divisor != 1.0) flat.div_(divisor);
  int64_t offset = 0;
  for (auto& g : grads) {
    const int64_t n = g.numel();
    g.copy_(flat.narrow(0, offset, n).view_as(g));
    offset += n;
  }
}

}  // namespace

void average_gradients(Communicator& comm, const std::vector<at::Tensor>& parameters) {
  reduce_gradients(comm, parameters, static_cast<double>(comm.world_size()));
}

void sum_gradients(Communicator& comm, const std::vector<at::Tensor>& parameters) {
  reduce_gradients(comm, parameters, 1.0);
}

}  // namespace clipguide::train
