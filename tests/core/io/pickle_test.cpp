// Tests for core/io/pickle: Python's own pickles of every protocol (0-5), tensor rebuilds over a
// storage, and hostile input: code-running pickles are only recorded, malformed ones are errors.
#include "core/io/pickle.h"
#include "core/io/torch_archive.h"

#include "io_test_util.h"

#include <ATen/ops/arange.h>

#include <chrono>

using namespace clipguide;
using namespace clipguide;
using clipguide::test::expect_error_containing;
using Kind = PickleValue::Kind;

namespace {

// A string literal with embedded NUL bytes, whole.
template <size_t N>
std::string B(const char (&s)[N]) {
  return std::string(s, N - 1);
}

std::string unhex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

PickleResult load(const std::string& bytes, const PersistentLoad& persistent = nullptr) {
  return read_pickle(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "test", persistent);
}

// pickle.dumps({"a": 1, "b": [1.5, None, True, False], "c": (1, 2, 3), "d": -5, "e": 2**40, "f": "✓ok",
//               "g": b"xy", "h": -(2**40), "i": 300, "j": 70000}, protocol=p) from CPython 3.11.
const char* const kProtocols[] = {
    "286470300a56610a70310a49310a7356620a70320a286c70330a46312e350a614e614930310a614930300a617356630a70340a2849310a4932"
    "0a49330a7470350a7356640a70360a492d350a7356650a70370a4c313039393531313632373737364c0a7356660a70380a565c7532373133"
    "6f6b0a70390a7356670a7031300a635f636f646563730a656e636f64650a7031310a285678790a7031320a566c6174696e310a7031330a74"
    "7031340a527031350a7356680a7031360a4c2d313039393531313632373737364c0a7356690a7031370a493330300a73566a0a7031380a49"
    "37303030300a732e",
    "7d71002858010000006171014b0158010000006271025d710328473ff80000000000004e4930310a4930300a655801000000637104284b01"
    "4b024b0374710558010000006471064afbffffff58010000006571074c313039393531313632373737364c0a580100000066710858050000"
    "00e29c936f6b7109580100000067710a635f636f646563730a656e636f64650a710b2858020000007879710c58060000006c6174696e3171"
    "0d74710e52710f58010000006871104c2d313039393531313632373737364c0a58010000006971114d2c0158010000006a71124a70110100"
    "752e",
    "80027d71002858010000006171014b0158010000006271025d710328473ff80000000000004e88896558010000006371044b014b024b0387"
    "710558010000006471064afbffffff58010000006571078a0600000000000158010000006671085805000000e29c936f6b71095801000000"
    "67710a635f636f646563730a656e636f64650a710b58020000007879710c58060000006c6174696e31710d86710e52710f58010000006871"
    "108a060000000000ff58010000006971114d2c0158010000006a71124a70110100752e",
    "80037d71002858010000006171014b0158010000006271025d710328473ff80000000000004e88896558010000006371044b014b024b0387"
    "710558010000006471064afbffffff58010000006571078a0600000000000158010000006671085805000000e29c936f6b71095801000000"
    "67710a43027879710b580100000068710c8a060000000000ff580100000069710d4d2c0158010000006a710e4a70110100752e",
    "80049571000000000000007d94288c0161944b018c0162945d9428473ff80000000000004e8889658c0163944b014b024b0387948c016494"
    "4afbffffff8c0165948a060000000000018c0166948c05e29c936f6b948c01679443027879948c0168948a060000000000ff8c0169944d2c"
    "018c016a944a70110100752e",
    "80059571000000000000007d94288c0161944b018c0162945d9428473ff80000000000004e8889658c0163944b014b024b0387948c016494"
    "4afbffffff8c0165948a060000000000018c0166948c05e29c936f6b948c01679443027879948c0168948a060000000000ff8c0169944d2c"
    "018c016a944a70110100752e",
};

// A tiny pickle writer for hand-built cases.
std::string str(const std::string& s) {
  std::string out = "X";
  for (int i = 0; i < 4; ++i) out += static_cast<char>((s.size() >> (8 * i)) & 0xFF);
  return out + s;
}
std::string int1(int v) { return std::string("K") + static_cast<char>(v); }

// _rebuild_tensor_v2(persistent storage '0' of 8 floats, offset, size, stride, False, OrderedDict())
std::string rebuild(int offset, const std::string& size_tuple, const std::string& stride_tuple) {
  return "ctorch._utils\n_rebuild_tensor_v2\n(" + std::string("(") + str("storage") + "ctorch\nFloatStorage\n" +
         str("0") + str("cpu") + int1(8) + "tQ" + int1(offset) + size_tuple + stride_tuple +
         "\x89" "ccollections\nOrderedDict\n)RtR";
}

PersistentLoad eight_floats(int* calls) {
  auto storage = PickleValue::make(Kind::kStorage);
  storage->storage_dtype = at::kFloat;
  storage->storage = at::arange(8, at::kFloat).storage();
  return [storage, calls](const PickleValue& pid) {
    ++*calls;
    EXPECT_EQ(pid.kind, Kind::kTuple);
    EXPECT_EQ(pid.items.at(0)->text, "storage");
    EXPECT_EQ(pid.items.at(1)->text, "torch.FloatStorage");
    return storage;
  };
}

}  // namespace

TEST(Pickle, ReadsEveryProtocol) {
  for (int p = 0; p < 6; ++p) {
    SCOPED_TRACE("protocol " + std::to_string(p));
    const PickleResult r = load(unhex(kProtocols[p]));
    ASSERT_EQ(r.value->kind, Kind::kDict);
    EXPECT_TRUE(r.skipped_classes.empty()) << r.skipped_classes.front();
    EXPECT_EQ(r.value->get("a")->integer, 1);
    const auto b = r.value->get("b");
    ASSERT_EQ(b->kind, Kind::kList);
    ASSERT_EQ(b->items.size(), 4u);
    EXPECT_EQ(b->items[0]->real, 1.5);
    EXPECT_EQ(b->items[1]->kind, Kind::kNone);
    EXPECT_TRUE(b->items[2]->boolean);
    EXPECT_EQ(b->items[3]->kind, Kind::kBool);
    EXPECT_FALSE(b->items[3]->boolean);
    const auto c = r.value->get("c");
    ASSERT_EQ(c->kind, Kind::kTuple);
    EXPECT_EQ(c->items.at(2)->integer, 3);
    EXPECT_EQ(r.value->get("d")->integer, -5);
    EXPECT_EQ(r.value->get("e")->integer, int64_t{1} << 40);
    EXPECT_EQ(r.value->get("f")->text, "✓ok");
    EXPECT_EQ(r.value->get("g")->kind, Kind::kBytes);
    EXPECT_EQ(r.value->get("g")->text, "xy");
    EXPECT_EQ(r.value->get("h")->integer, -(int64_t{1} << 40));
    EXPECT_EQ(r.value->get("i")->integer, 300);
    EXPECT_EQ(r.value->get("j")->integer, 70000);
  }
}

TEST(Pickle, MaliciousGlobalsAreRecordedNeverRun) {
  const std::string marker = "/tmp/clipguide-pwned";
  std::filesystem::remove(marker);
  std::filesystem::remove(marker + "2");
  // pickle.dumps({"x": Evil(), "y": EvilEval()}, protocol=2): os.system("touch /tmp/clipguide-pwned"),
  // eval("open('/tmp/clipguide-pwned2','w').close()")
  const PickleResult r = load(unhex(
      "80027d710028580100000078710163706f7369780a73797374656d0a7102581a000000746f756368202f746d702f636c697067756964652d"
      "70776e656471038571045271055801000000797106635f5f6275696c74696e5f5f0a6576616c0a710758290000006f70656e28272f746d70"
      "2f636c697067756964652d70776e656432272c277727292e636c6f73652829710885710952710a752e"));
  EXPECT_EQ(r.skipped_classes, (std::vector<std::string>{"posix.system", "__builtin__.eval"}));
  const auto x = r.value->get("x");
  ASSERT_EQ(x->kind, Kind::kObject);
  EXPECT_EQ(x->text, "posix.system");
  EXPECT_EQ(x->args->items.at(0)->text, "touch " + marker);
  EXPECT_FALSE(std::filesystem::exists(marker));
  EXPECT_FALSE(std::filesystem::exists(marker + "2"));
  // Protocol 4 (STACK_GLOBAL, MEMOIZE, FRAME): [Evil()]
  const PickleResult r4 = load(unhex(
      "80049538000000000000005d948c05706f736978948c0673797374656d9493948c1a746f756368202f746d702f636c697067756964652d"
      "70776e65649485945294612e"));
  EXPECT_EQ(r4.skipped_classes, (std::vector<std::string>{"posix.system"}));
  EXPECT_EQ(r4.value->items.at(0)->kind, Kind::kObject);
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST(Pickle, ObjectsKeepArgsStateAndItems) {
  // NEWOBJ argparse.Namespace, BUILD {"lr": 0.1}
  const std::string bytes = "\x80\x02" "cargparse\nNamespace\n)\x81}" + str("lr") + "G\x3f\xb9\x99\x99\x99\x99\x99\x9a" "sb.";
  const PickleResult r = load(bytes);
  ASSERT_EQ(r.value->kind, Kind::kObject);
  EXPECT_EQ(r.value->text, "argparse.Namespace");
  EXPECT_DOUBLE_EQ(r.value->state->get("lr")->real, 0.1);
  EXPECT_EQ(r.skipped_classes, std::vector<std::string>{"argparse.Namespace"});
}

TEST(Pickle, RebuildsTensorsSharingOneStorage) {
  int calls = 0;
  // {"a": 8 floats as (2, 4), "b": view at offset 1, size (3,), stride (2,) -> 1, 3, 5}
  const std::string bytes = std::string("\x80\x02}(") + str("a") + rebuild(0, int1(2) + int1(4) + "\x86", int1(4) + int1(1) + "\x86") +
                            str("b") + rebuild(1, int1(3) + "\x85", int1(2) + "\x85") + "u.";
  const PickleResult r = load(bytes, eight_floats(&calls));
  EXPECT_EQ(calls, 2);
  const at::Tensor a = r.value->get("a")->tensor;
  const at::Tensor b = r.value->get("b")->tensor;
  EXPECT_EQ(a.sizes().vec(), (std::vector<int64_t>{2, 4}));
  EXPECT_TRUE(a.equal(at::arange(8, at::kFloat).view({2, 4})));
  EXPECT_EQ(b.stride(0), 2);
  EXPECT_EQ(b.storage_offset(), 1);
  EXPECT_EQ(b[2].item<float>(), 5.0f);
  EXPECT_TRUE(a.storage().is_alias_of(b.storage()));
}

TEST(Pickle, RefusesViewsOutsideTheirStorage) {
  int calls = 0;
  for (const auto& [offset, size, stride] :
       std::vector<std::tuple<int, std::string, std::string>>{{0, int1(9) + "\x85", int1(1) + "\x85"},   // too long
                                                              {7, int1(2) + "\x85", int1(1) + "\x85"},   // past the end
                                                              {0, int1(3) + "\x85", int1(4) + "\x85"}}) {  // stride
    const std::string bytes = "\x80\x02" + rebuild(offset, size, stride) + ".";
    expect_error_containing([&] { load(bytes, eight_floats(&calls)); }, {"does not fit its storage of 8 Float elements"});
  }
}

TEST(PickleErrors, UnknownOpcodeNamesItAndTheOffset) {
  expect_error_containing([&] { load(std::string("\x80\x02}\xff.", 5)); }, {"test", "0xff", "byte offset 3"});
  expect_error_containing([&] { load(std::string("\x80\x02\x97.", 4)); }, {"0x97", "byte offset 2"});  // NEXT_BUFFER
}

TEST(PickleErrors, MalformedStreams) {
  expect_error_containing([&] { load(""); }, {"end of data before STOP"});
  expect_error_containing([&] { load("\x80\x02."); }, {"stack underflow"});
  expect_error_containing([&] { load("\x80\x02h\x05."); }, {"memo index 5 was never stored"});
  expect_error_containing([&] { load("\x80\x02X\xff\xff\xff\x7f" "abc."); }, {"truncated", "2147483647"});
  expect_error_containing([&] { load("\x80\x02N(\x85."); }, {"stack underflow"});  // TUPLE1 across a MARK
  expect_error_containing([&] { load("\x80\x02Nu."); }, {"no MARK"});
  expect_error_containing([&] { load("\x80\x02K\x01K\x02K\x03s."); }, {"SETITEM", "expected a dict"});
  expect_error_containing([&] { load(std::string("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.", 14)); },
                          {"does not fit 64 bits"});
  expect_error_containing([&] { load("\x80\x02K\x01)R."); }, {"REDUCE", "expected a class or function"});
  expect_error_containing([&] { load("\x80\x09N."); }, {"protocol 9"});
  expect_error_containing([&] { load(B("\x80\x02(X\x07\x00\x00\x00storagetQ.")); }, {"persistent id"});
}

TEST(PickleErrors, EveryTruncationIsAnError) {
  const std::string bytes = unhex(kProtocols[2]);
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_THROW(load(bytes.substr(0, n)), Error) << "cut at " << n;
  }
}

TEST(Pickle, DeepNestingDoesNotOverflowTheStack) {
  // 1,000,000 nested lists: building and destroying the tree must not recurse per level.
  const size_t depth = 1000000;
  std::string bytes = "\x80\x02";
  bytes += std::string(depth, ']');
  bytes += std::string(depth - 1, 'a');
  bytes += '.';
  PickleResult r = load(bytes);
  EXPECT_EQ(r.value->kind, Kind::kList);
  r.value.reset();
}

// A dict BUILT with itself, over and over (found by AddressSanitizer: the merge copied entries from the
// vector it was growing): nothing to add, no crash, no cycle.
TEST(Pickle, ObjectBuiltWithItselfIsSafe) {
  std::string bytes = "\x80\x02}";
  for (int i = 0; i < 100; ++i) bytes += str("k" + std::to_string(i)) + int1(i) + "s";
  for (int i = 0; i < 1024; ++i) bytes += "2b";  // DUP, BUILD
  bytes += ".";
  PickleResult r = load(bytes);
  ASSERT_EQ(r.value->kind, Kind::kDict);
  EXPECT_EQ(r.value->entries.size(), 100u);
}

// A set rebuilt from a growing list at every step: quadratic work in the file's size. Refused quickly
// instead of running for minutes.
TEST(Pickle, QuadraticCopyingIsRefused) {
  const std::string get_l = B("h\x00");
  std::string bytes = B("\x80\x02]q\x00");  // L = [], memo 0
  for (int i = 0; i < 20000; ++i) {
    bytes += "c__builtin__\nset\n" + get_l + "\x85R0";  // set(L), dropped
    bytes += get_l + int1(1) + "a0";                  // L.append(1)
  }
  bytes += ".";
  const auto start = std::chrono::steady_clock::now();
  expect_error_containing([&] { load(bytes); }, {"refused", "pickle bomb"});
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0);
}

// 40 levels, each a list holding the level below twice (through the memo): 2^40 paths to the one tensor.
// Reading shares the values; listing the tensors is refused instead of taking forever.
TEST(Pickle, SharedValueDagIsRefusedWhenFlattened) {
  int calls = 0;
  std::string bytes = "\x80\x02" + rebuild(0, "K\x08\x85", "K\x01\x85") + B("q\x00");  // level 0: a tensor, memo 0
  for (int level = 1; level <= 40; ++level) {
    bytes += std::string("h") + static_cast<char>(level - 1) + "h" + static_cast<char>(level - 1) + "\x86q" +
             static_cast<char>(level);  // (below, below), memo level
  }
  bytes += ".";
  PickleResult r = load(bytes, eight_floats(&calls));
  const auto start = std::chrono::steady_clock::now();
  expect_error_containing([&] { flatten_tensors(r.value, "dag.pt"); }, {"dag.pt", "refused", "pickle bomb"});
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 20.0);
}

TEST(Pickle, StorageTypeNames) {
  EXPECT_EQ(storage_type_dtype("torch.HalfStorage"), at::kHalf);
  EXPECT_EQ(storage_type_dtype("torch.cuda.BFloat16Storage"), at::kBFloat16);
  EXPECT_EQ(storage_type_dtype("torch.storage.UntypedStorage"), at::kByte);
  EXPECT_EQ(storage_type_dtype("os.system"), std::nullopt);
}
