// A small unpickler for what torch.save writes (pickle protocols 2 to 5):
// dicts, OrderedDicts, lists, tuples, numbers, strings, bytes, None, and the
// tensor rebuild functions.  Objects of any other class become opaque Objects
// that hold their class name, so checkpoints that carry hyper-parameters
// (argparse.Namespace, Lightning's AttributeDict, ...) still load.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor_data.h"

namespace anitalker {

struct PyObject;
// Objects live in the Pickle that made them (an arena): references between
// them are plain pointers, so reference cycles and deep nesting, which a
// hostile file can build, cost neither leaks nor recursion on destruction.
using PyRef = PyObject*;

struct PyObject {
  enum class Type { None, Bool, Int, Float, Str, Bytes, List, Tuple, Dict, Global, Object, Storage, Tensor };
  Type type = Type::None;
  int64_t i = 0;      // Bool, Int
  double f = 0;       // Float
  std::string s;      // Str, Bytes; Global and Object: "module.name"
  std::vector<PyRef> items;                     // List, Tuple
  std::vector<std::pair<PyRef, PyRef>> dict;    // Dict (in insertion order)
  DType dtype = DType::Float32;                 // Storage
  std::shared_ptr<const Storage> storage;       // Storage
  TensorData tensor;                            // Tensor

  const char* type_name() const;
  // The type with its article, for messages: "a dict", "an int", "None".
  std::string a_type() const;
};

struct Pickle {
  std::vector<std::unique_ptr<PyObject>> arena;
  PyRef root = nullptr;
  PyRef make(PyObject::Type t) {
    arena.push_back(std::make_unique<PyObject>());
    arena.back()->type = t;
    return arena.back().get();
  }
};

// Called for each persistent id (BINPERSID); returns the object it stands for.
// It may create objects with `pickle.make`.
using PersistentLoad = std::function<PyRef(Pickle& pickle, PyRef pid)>;

// Runs the pickle in [data, data+size).  `name` is used in error messages,
// which also give the byte offset and the opcode.
std::unique_ptr<Pickle> unpickle(const uint8_t* data, size_t size, const std::string& name, const PersistentLoad& persistent_load);

}  // namespace anitalker
