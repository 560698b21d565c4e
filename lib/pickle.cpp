#include "pickle.h"

#include <cstring>
#include <unordered_map>

#include "error.h"

namespace anitalker {

const char* PyObject::type_name() const {
  switch (type) {
    case Type::None: return "None";
    case Type::Bool: return "bool";
    case Type::Int: return "int";
    case Type::Float: return "float";
    case Type::Str: return "str";
    case Type::Bytes: return "bytes";
    case Type::List: return "list";
    case Type::Tuple: return "tuple";
    case Type::Dict: return "dict";
    case Type::Global: return "global";
    case Type::Object: return "object";
    case Type::Storage: return "storage";
    case Type::Tensor: return "tensor";
  }
  return "?";
}

std::string PyObject::a_type() const {
  const std::string t = type_name();
  if (type == Type::None) return t;
  return (t[0] == 'i' || t[0] == 'o' ? "an " : "a ") + t;
}

namespace {

using T = PyObject::Type;

class Unpickler {
 public:
  Unpickler(const uint8_t* d, size_t n, const std::string& name, const PersistentLoad& pl)
      : d_(d), n_(n), name_(name), pl_(pl), out_(std::make_unique<Pickle>()) {}

  std::unique_ptr<Pickle> run() {
    while (true) {
      op_pos_ = pos_;
      const uint8_t op = u8();
      op_ = op;
      if (op == '.') break;  // STOP
      step(op);
    }
    if (stack_.size() != 1) fail("STOP with " + std::to_string(stack_.size()) + " objects on the stack, expected 1");
    out_->root = stack_.back();
    return std::move(out_);
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    char buf[64];
    std::snprintf(buf, sizeof buf, " (byte %zu, opcode 0x%02x)", op_pos_, op_);
    throw format_error(name_ + ": bad pickle: " + why + buf);
  }

  // --- reading the byte stream
  void need(size_t k) const {
    if (n_ - pos_ < k) fail("unexpected end of data (truncated file?)");
  }
  uint8_t u8() {
    need(1);
    return d_[pos_++];
  }
  uint64_t le(size_t k) {
    need(k);
    uint64_t v = 0;
    for (size_t i = 0; i < k; ++i) v |= static_cast<uint64_t>(d_[pos_ + i]) << (8 * i);
    pos_ += k;
    return v;
  }
  std::string bytes(uint64_t k) {
    if (k > n_ - pos_) fail("a string of " + std::to_string(k) + " bytes runs past the end of the data (truncated file?)");
    std::string s(reinterpret_cast<const char*>(d_ + pos_), static_cast<size_t>(k));
    pos_ += static_cast<size_t>(k);
    return s;
  }
  std::string line() {
    const void* nl = std::memchr(d_ + pos_, '\n', n_ - pos_);
    if (!nl) fail("unterminated text argument");
    const size_t len = static_cast<const uint8_t*>(nl) - (d_ + pos_);
    std::string s(reinterpret_cast<const char*>(d_ + pos_), len);
    pos_ += len + 1;
    return s;
  }

  // --- the stack
  PyRef pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("stack underflow");
    PyRef r = stack_.back();
    stack_.pop_back();
    return r;
  }
  PyRef& top() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("stack underflow");
    return stack_.back();
  }
  std::vector<PyRef> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PyRef> v(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return v;
  }
  PyRef make(T t) { return out_->make(t); }
  PyRef make_int(int64_t v) {
    PyRef o = make(T::Int);
    o->i = v;
    return o;
  }
  PyRef make_str(std::string s, T t = T::Str) {
    PyRef o = make(t);
    o->s = std::move(s);
    return o;
  }
  PyRef tuple(std::vector<PyRef> v) {
    PyRef o = make(T::Tuple);
    o->items = std::move(v);
    return o;
  }
  void memo_put(uint64_t k) { memo_[k] = top(); }
  PyRef memo_get(uint64_t k) {
    auto it = memo_.find(k);
    if (it == memo_.end()) fail("memo key " + std::to_string(k) + " was never stored");
    return it->second;
  }

  void set_items(PyRef target, const std::vector<PyRef>& kv) {
    if (kv.size() % 2) fail("odd number of items for SETITEMS");
    if (target->type == T::Object) return;  // an opaque mapping: its contents are not needed
    if (target->type != T::Dict) fail("SETITEM(S) on " + target->a_type());
    for (size_t i = 0; i < kv.size(); i += 2) target->dict.emplace_back(kv[i], kv[i + 1]);
  }
  void append(PyRef target, const std::vector<PyRef>& v) {
    if (target->type == T::Object) return;
    if (target->type != T::List) fail("APPEND(S) on " + target->a_type());
    target->items.insert(target->items.end(), v.begin(), v.end());
  }

  static int64_t as_int(const PyRef& o, bool& ok) {
    if (o->type == T::Int || o->type == T::Bool) return o->i;
    ok = false;
    return 0;
  }
  std::vector<int64_t> int_tuple(const PyRef& o, const char* what) {
    if (o->type != T::Tuple && o->type != T::List) fail(std::string("tensor rebuild: ") + what + " is " + o->a_type() + ", expected a tuple of ints");
    std::vector<int64_t> v;
    for (const PyRef& e : o->items) {
      bool ok = true;
      v.push_back(as_int(e, ok));
      if (!ok) fail(std::string("tensor rebuild: ") + what + " holds " + e->a_type() + ", expected ints");
    }
    return v;
  }

  // torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, ...)
  PyRef rebuild_tensor(const PyRef& args, const std::string& fn) {
    if (args->type != T::Tuple || args->items.size() < 4)
      fail(fn + " expects (storage, offset, size, stride, ...)");
    const PyRef& st = args->items[0];
    if (st->type != T::Storage) fail(fn + ": first argument is " + st->a_type() + ", expected a storage");
    bool ok = true;
    const int64_t off = as_int(args->items[1], ok);
    if (!ok) fail(fn + ": storage offset is not an int");
    PyRef t = make(T::Tensor);
    t->tensor.dtype = st->dtype;
    t->tensor.storage = st->storage;
    t->tensor.offset = off;
    t->tensor.shape = int_tuple(args->items[2], "size");
    t->tensor.strides = int_tuple(args->items[3], "stride");
    check_view_bounds(t->tensor, name_ + ": tensor on storage '" + st->s + "'");
    return t;
  }

  PyRef reduce(const PyRef& callable, const PyRef& args) {
    const std::string fn = callable->type == T::Global ? callable->s : std::string();
    if (fn == "collections.OrderedDict" || fn == "builtins.dict") {
      PyRef d = make(T::Dict);
      // OrderedDict([(k, v), ...]) is legal too.
      if (args->type == T::Tuple && args->items.size() == 1 && args->items[0]->type == T::List)
        for (const PyRef& kv : args->items[0]->items)
          if (kv->type == T::Tuple && kv->items.size() == 2) d->dict.emplace_back(kv->items[0], kv->items[1]);
      return d;
    }
    if (fn == "torch._utils._rebuild_tensor_v2" || fn == "torch._utils._rebuild_tensor") return rebuild_tensor(args, fn);
    if (fn == "torch._utils._rebuild_parameter" || fn == "torch._utils._rebuild_parameter_with_state") {
      if (args->type != T::Tuple || args->items.empty() || args->items[0]->type != T::Tensor)
        fail(fn + " expects a tensor as its first argument");
      return args->items[0];
    }
    if (fn == "_codecs.encode" && args->type == T::Tuple && !args->items.empty() && args->items[0]->type == T::Str)
      return make_str(args->items[0]->s, T::Bytes);
    // Anything else (argparse.Namespace, numpy scalars, ...) is kept opaque.
    return make_str(fn.empty() ? std::string("?") : fn, T::Object);
  }

  void step(uint8_t op) {
    switch (op) {
      case 0x80: u8(); break;                   // PROTO
      case 0x95: le(8); break;                  // FRAME: framing is only a hint
      case '(': marks_.push_back(stack_.size()); break;  // MARK
      case '0': pop(); break;                   // POP
      case '1': pop_mark(); break;              // POP_MARK
      case '2': stack_.push_back(top()); break; // DUP
      case 'N': stack_.push_back(make(T::None)); break;
      case 0x88: case 0x89: {                   // NEWTRUE, NEWFALSE
        PyRef o = make(T::Bool);
        o->i = op == 0x88;
        stack_.push_back(o);
        break;
      }
      case 'J': stack_.push_back(make_int(static_cast<int32_t>(le(4)))); break;  // BININT
      case 'K': stack_.push_back(make_int(static_cast<int64_t>(le(1)))); break;  // BININT1
      case 'M': stack_.push_back(make_int(static_cast<int64_t>(le(2)))); break;  // BININT2
      case 0x8a: case 0x8b: {                   // LONG1, LONG4
        const uint64_t k = op == 0x8a ? le(1) : le(4);
        if (k > 8) {  // wider than int64: keep it, opaque (a hyper-parameter, not a tensor field)
          bytes(k);
          stack_.push_back(make_str("int", T::Object));
          break;
        }
        uint64_t v = k ? le(static_cast<size_t>(k)) : 0;
        if (k && k < 8 && (v >> (8 * k - 1)) & 1) v |= ~uint64_t(0) << (8 * k);  // sign-extend
        stack_.push_back(make_int(static_cast<int64_t>(v)));
        break;
      }
      case 'G': {                               // BINFLOAT, big-endian
        need(8);
        uint64_t u = 0;
        for (int i = 0; i < 8; ++i) u = (u << 8) | d_[pos_ + i];
        pos_ += 8;
        PyRef o = make(T::Float);
        std::memcpy(&o->f, &u, 8);
        stack_.push_back(o);
        break;
      }
      case 'X': stack_.push_back(make_str(bytes(le(4)))); break;     // BINUNICODE
      case 0x8c: stack_.push_back(make_str(bytes(le(1)))); break;    // SHORT_BINUNICODE
      case 0x8d: stack_.push_back(make_str(bytes(le(8)))); break;    // BINUNICODE8
      case 'T': stack_.push_back(make_str(bytes(le(4)))); break;     // BINSTRING
      case 'U': stack_.push_back(make_str(bytes(le(1)))); break;     // SHORT_BINSTRING
      case 'B': stack_.push_back(make_str(bytes(le(4)), T::Bytes)); break;  // BINBYTES
      case 'C': stack_.push_back(make_str(bytes(le(1)), T::Bytes)); break;  // SHORT_BINBYTES
      case 0x8e: case 0x96: stack_.push_back(make_str(bytes(le(8)), T::Bytes)); break;  // BINBYTES8, BYTEARRAY8
      case ']': stack_.push_back(make(T::List)); break;   // EMPTY_LIST
      case '}': stack_.push_back(make(T::Dict)); break;   // EMPTY_DICT
      case ')': stack_.push_back(make(T::Tuple)); break;  // EMPTY_TUPLE
      case 0x8f: stack_.push_back(make(T::List)); break;  // EMPTY_SET, kept as a list
      case 'l': {                               // LIST
        PyRef o = make(T::List);
        o->items = pop_mark();
        stack_.push_back(o);
        break;
      }
      case 't': stack_.push_back(tuple(pop_mark())); break;  // TUPLE
      case 0x91: {                              // FROZENSET
        PyRef o = make(T::List);
        o->items = pop_mark();
        stack_.push_back(o);
        break;
      }
      case 0x85: case 0x86: case 0x87: {        // TUPLE1..3
        const size_t k = op - 0x84u;
        std::vector<PyRef> v(k);
        for (size_t i = k; i-- > 0;) v[i] = pop();
        stack_.push_back(tuple(std::move(v)));
        break;
      }
      case 'd': {                               // DICT
        std::vector<PyRef> kv = pop_mark();
        PyRef o = make(T::Dict);
        set_items(o, kv);
        stack_.push_back(o);
        break;
      }
      case 's': {                               // SETITEM
        PyRef v = pop(), k = pop();
        set_items(top(), {k, v});
        break;
      }
      case 'u': {                               // SETITEMS
        std::vector<PyRef> kv = pop_mark();
        set_items(top(), kv);
        break;
      }
      case 'a': {                               // APPEND
        PyRef v = pop();
        append(top(), {v});
        break;
      }
      case 'e': {                               // APPENDS
        std::vector<PyRef> v = pop_mark();
        append(top(), v);
        break;
      }
      case 0x90: {                              // ADDITEMS
        std::vector<PyRef> v = pop_mark();
        PyRef s = top();
        if (s->type == T::List) s->items.insert(s->items.end(), v.begin(), v.end());
        break;
      }
      case 'q': memo_put(le(1)); break;         // BINPUT
      case 'r': memo_put(le(4)); break;         // LONG_BINPUT
      case 0x94: memo_put(memo_.size()); break; // MEMOIZE
      case 'h': stack_.push_back(memo_get(le(1))); break;  // BINGET
      case 'j': stack_.push_back(memo_get(le(4))); break;  // LONG_BINGET
      case 'c': {                               // GLOBAL "module\nname\n"
        std::string mod = line();
        std::string nm = line();
        stack_.push_back(make_str(mod + "." + nm, T::Global));
        break;
      }
      case 0x93: {                              // STACK_GLOBAL
        PyRef nm = pop(), mod = pop();
        if (nm->type != T::Str || mod->type != T::Str) fail("STACK_GLOBAL needs two strings");
        stack_.push_back(make_str(mod->s + "." + nm->s, T::Global));
        break;
      }
      case 'R': {                               // REDUCE
        PyRef args = pop(), callable = pop();
        stack_.push_back(reduce(callable, args));
        break;
      }
      case 0x81: {                              // NEWOBJ
        PyRef args = pop(), cls = pop();
        if (cls->type == T::Global && cls->s == "collections.OrderedDict") stack_.push_back(make(T::Dict));
        else stack_.push_back(make_str(cls->type == T::Global ? cls->s : "?", T::Object));
        (void)args;
        break;
      }
      case 0x92: {                              // NEWOBJ_EX
        pop();
        pop();
        PyRef cls = pop();
        stack_.push_back(make_str(cls->type == T::Global ? cls->s : "?", T::Object));
        break;
      }
      case 'b': pop(); top(); break;            // BUILD: object state (e.g. _metadata) is not needed
      case 'Q': {                               // BINPERSID
        PyRef pid = pop();
        if (!pl_) fail("persistent id without a loader");
        stack_.push_back(pl_(*out_, pid));
        break;
      }
      default: {
        char c[8];
        std::snprintf(c, sizeof c, "%c", (op >= 32 && op < 127) ? op : '?');
        fail(std::string("unsupported pickle opcode '") + c + "'");
      }
    }
  }

  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0, op_pos_ = 0;
  uint8_t op_ = 0;
  const std::string& name_;
  const PersistentLoad& pl_;
  std::unique_ptr<Pickle> out_;
  std::vector<PyRef> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PyRef> memo_;
};

}  // namespace

std::unique_ptr<Pickle> unpickle(const uint8_t* data, size_t size, const std::string& name,
                                 const PersistentLoad& persistent_load) {
  return Unpickler(data, size, name, persistent_load).run();
}

}  // namespace anitalker
