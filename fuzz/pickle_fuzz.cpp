// Fuzz target: the restricted pickle machine on raw bytes, persistent ids resolved to one small storage,
// then the tensors listed as a checkpoint loader does.
#include "core/io/pickle.h"
#include "core/io/torch_archive.h"
#include "fuzz_util.h"

#include <ATen/ops/zeros.h>

using namespace clipguide;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const PickleValuePtr storage = [] {
    auto s = PickleValue::make(PickleValue::Kind::kStorage);
    s->storage_dtype = at::kFloat;
    s->storage = at::zeros({16}, at::kFloat).storage();
    return s;
  }();
  clipguide::fuzz::expect_clear_errors([&] {
    PickleResult r = read_pickle(data, size, "fuzz", [](const PickleValue&) { return storage; });
    flatten_tensors(r.value, "fuzz");
  });
  return 0;
}
