//! Building Python objects from native code: owned references, and the slotted frozen
//! dataclasses of `gates.events` filled slot by slot (what `object.__new__` plus the member
//! descriptors' `__set__` do, without a Python call per field).

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use std::os::raw::{c_char, c_int};

/// An owned (strong) reference; decref'd on drop unless released.
pub struct Obj(pub *mut ffi::PyObject);

impl Obj {
    #[inline]
    pub fn release(self) -> *mut ffi::PyObject {
        let p = self.0;
        std::mem::forget(self);
        p
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        unsafe { ffi::Py_XDECREF(self.0) }
    }
}

#[inline]
pub unsafe fn new_ref(p: *mut ffi::PyObject) -> Obj {
    ffi::Py_INCREF(p);
    Obj(p)
}

#[inline]
pub unsafe fn none() -> Obj {
    new_ref(ffi::Py_None())
}

#[inline]
pub unsafe fn boolean(b: bool) -> Obj {
    new_ref(if b { ffi::Py_True() } else { ffi::Py_False() })
}

#[inline]
pub unsafe fn long(v: i64) -> Obj {
    Obj(ffi::PyLong_FromLongLong(v))
}

#[inline]
pub unsafe fn float(v: f64) -> Obj {
    Obj(ffi::PyFloat_FromDouble(v))
}

/// A str from strict UTF-8 bytes, or None (invalid UTF-8: the caller hands the message back).
#[inline]
pub unsafe fn text(s: &[u8]) -> Option<Obj> {
    let p = ffi::PyUnicode_DecodeUTF8(
        s.as_ptr() as *const c_char,
        s.len() as ffi::Py_ssize_t,
        c"strict".as_ptr(),
    );
    if p.is_null() {
        ffi::PyErr_Clear();
        return None;
    }
    Some(Obj(p))
}

#[inline]
pub unsafe fn opt_text(s: Option<&[u8]>) -> Option<Obj> {
    match s {
        None => Some(none()),
        Some(b) => text(b),
    }
}

#[repr(C)]
struct MemberDef {
    name: *const c_char,
    type_code: c_int,
    offset: ffi::Py_ssize_t,
    flags: c_int,
    doc: *const c_char,
}

#[repr(C)]
struct MemberDescr {
    ob_base: ffi::PyObject,
    d_type: *mut ffi::PyTypeObject,
    d_name: *mut ffi::PyObject,
    d_qualname: *mut ffi::PyObject,
    d_member: *mut MemberDef,
}

const T_OBJECT_EX: c_int = 16;

/// A slotted class and the byte offset of each named slot, in the order given.
pub struct Shape {
    _cls: Py<PyAny>,
    tp: *mut ffi::PyTypeObject,
    offsets: Vec<isize>,
}

impl Shape {
    /// Checks that every field is a plain object slot of `cls` and that filling the slots
    /// gives what `getattr` reads back; any surprise is an error (the caller stays in Python).
    pub fn new(py: Python<'_>, cls: &Bound<'_, PyAny>, fields: &[&str]) -> PyResult<Shape> {
        let dict = cls.getattr("__dict__")?;
        let mut offsets = Vec::with_capacity(fields.len());
        let tp = cls.as_ptr() as *mut ffi::PyTypeObject;
        let basic = unsafe { (*tp).tp_basicsize };
        for name in fields {
            let d = dict.get_item(*name)?;
            let tname: String = d.get_type().getattr("__name__")?.extract()?;
            if tname != "member_descriptor" {
                return Err(PyTypeError::new_err(format!(
                    "{name} is not a slot ({tname})"
                )));
            }
            let m = unsafe { &*(*(d.as_ptr() as *const MemberDescr)).d_member };
            let off = m.offset;
            if m.type_code != T_OBJECT_EX || off < 16 || off + 8 > basic {
                return Err(PyTypeError::new_err(format!(
                    "slot {name} has an unexpected layout"
                )));
            }
            offsets.push(off);
        }
        if unsafe { (*tp).tp_alloc }.is_none() {
            return Err(PyTypeError::new_err("class without tp_alloc"));
        }
        let shape = Shape {
            _cls: cls.clone().unbind(),
            tp,
            offsets,
        };
        // round trip: distinct objects in, the same objects out through getattr
        let probe: Vec<Py<PyAny>> = (0..fields.len())
            .map(|i| {
                (1_000_003 + i)
                    .into_pyobject(py)
                    .unwrap()
                    .into_any()
                    .unbind()
            })
            .collect();
        let obj = unsafe {
            let o = shape.alloc().ok_or_else(|| PyErr::fetch(py))?;
            for (i, v) in probe.iter().enumerate() {
                shape.set(o.0, i, new_ref(v.as_ptr()));
            }
            Bound::from_owned_ptr(py, o.release())
        };
        for (name, v) in fields.iter().zip(&probe) {
            if !obj.getattr(*name)?.is(v.bind(py)) {
                return Err(PyTypeError::new_err(format!(
                    "slot {name} did not round-trip"
                )));
            }
        }
        Ok(shape)
    }

    /// A fresh instance with every slot empty (fill them all with `set` before use).
    #[inline]
    pub unsafe fn alloc(&self) -> Option<Obj> {
        let p = ((*self.tp).tp_alloc.unwrap_unchecked())(self.tp, 0);
        if p.is_null() {
            return None;
        }
        Some(Obj(p))
    }

    /// Store `v` in slot `i` of a fresh instance (steals the reference).
    #[inline]
    pub unsafe fn set(&self, obj: *mut ffi::PyObject, i: usize, v: Obj) {
        let slot = (obj as *mut u8).offset(self.offsets[i]) as *mut *mut ffi::PyObject;
        let old = *slot;
        *slot = v.release();
        ffi::Py_XDECREF(old);
    }
}
