// NumPy arrays in and out of the kernels: conversion to the stack's dtype, shape checks with messages
// that name the argument, the expected and the actual.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "fusedrnn/shapes.hpp"

namespace fusedrnn_py {

namespace py = pybind11;
using fusedrnn::Index;

template <typename T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

inline std::string shape_str(const std::vector<Index>& shape) {
  std::ostringstream out;
  out << "(";
  for (std::size_t k = 0; k < shape.size(); ++k) out << (k ? ", " : "") << shape[k];
  out << (shape.size() == 1 ? ",)" : ")");
  return out.str();
}

inline std::string type_name(const py::handle& obj) { return py::str(py::type::handle_of(obj)); }

template <typename T>
bool is_aligned(const T* p) { return reinterpret_cast<std::uintptr_t>(p) % alignof(T) == 0; }

// Converts obj to a C-contiguous, aligned array of T (copying only when needed) and checks its shape.
template <typename T>
Array<T> checked_array(const py::handle& obj, const std::string& name, const std::vector<Index>& shape) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(name + ": expected a numpy array, got " + type_name(obj));
  Array<T> a = Array<T>::ensure(obj);
  if (!a) throw py::type_error(name + ": cannot convert to the model's dtype");
  std::vector<Index> actual(a.shape(), a.shape() + a.ndim());
  if (actual != shape) throw py::value_error(name + ": expected shape " + shape_str(shape) + ", got " + shape_str(actual));
  if (!is_aligned(a.data())) {  // C-contiguous but not on a multiple of sizeof(T) (a view into bytes, say)
    Array<T> aligned(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
    std::memcpy(aligned.mutable_data(), a.data(), static_cast<std::size_t>(a.nbytes()));
    return aligned;
  }
  return a;
}

// An optional array: None stays empty. (A default-constructed py::array_t is not "no array" but an
// empty one, hence std::optional.)
template <typename T>
std::optional<Array<T>> optional_array(const py::handle& obj, const std::string& name, const std::vector<Index>& shape) {
  if (obj.is_none()) return std::nullopt;
  return checked_array<T>(obj, name, shape);
}

template <typename T>
const T* data_or_null(const std::optional<Array<T>>& a) { return a ? a->data() : nullptr; }

template <typename T>
T* mutable_data_or_null(std::optional<Array<T>>& a) { return a ? a->mutable_data() : nullptr; }

template <typename T>
py::object array_or_none(const std::optional<Array<T>>& a) { return a ? py::object(*a) : py::object(py::none()); }

// A state array the kernels update in place: exactly the model's dtype, C-contiguous, writable, of the
// expected shape (no conversion, which would update a copy).
template <typename T>
T* state_in_place(const py::object& obj, const std::string& name, const std::vector<Index>& shape) {
  using Exact = py::array_t<T, py::array::c_style>;
  if (!Exact::check_(obj))
    throw py::type_error(name + ": expected a C-contiguous numpy array of the model's dtype");
  auto a = py::reinterpret_borrow<Exact>(obj);
  if (!a.writeable()) throw py::value_error(name + ": expected a writable array");
  if (!is_aligned(a.data())) throw py::value_error(name + ": expected an array aligned to its item size");
  std::vector<Index> actual(a.shape(), a.shape() + a.ndim());
  if (actual != shape) throw py::value_error(name + ": expected shape " + shape_str(shape) + ", got " + shape_str(actual));
  return a.mutable_data();
}

}  // namespace fusedrnn_py
