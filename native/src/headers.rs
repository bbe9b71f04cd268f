//! `fg-schema` / `fg-schema-version` / `fg-format` headers -> (forced framing, schema hint),
//! with `streams.codecs.headers.header_text`'s rules (last value wins; null or non-UTF-8 is
//! absent). Only lists or tuples of `(str, bytes | str | None)` pairs are read here; any
//! other shape goes back to Python. The meaning of each distinct (name, version, format)
//! triple comes from the Python decoder once and is cached.

use crate::objects::Obj;
use pyo3::ffi;
use pyo3::prelude::*;
use std::collections::HashMap;

#[derive(Clone, Copy)]
pub enum Hint {
    None,
    Back,
    Target(usize),
}

pub struct HeaderCache {
    resolve: Py<PyAny>,
    cache: HashMap<Vec<u8>, (u8, Hint, bool)>,
    key: Vec<u8>,
    json_default: bool,
}

unsafe fn utf8<'a>(o: *mut ffi::PyObject) -> Option<&'a [u8]> {
    let mut n: ffi::Py_ssize_t = 0;
    let p = ffi::PyUnicode_AsUTF8AndSize(o, &mut n);
    if p.is_null() {
        ffi::PyErr_Clear();
        return None;
    }
    Some(std::slice::from_raw_parts(p as *const u8, n as usize))
}

/// A header value as text: Some(None) for null or non-UTF-8 bytes; None: hand back.
unsafe fn value_text<'a>(v: *mut ffi::PyObject) -> Option<Option<&'a [u8]>> {
    if v == ffi::Py_None() {
        Some(None)
    } else if ffi::PyUnicode_CheckExact(v) != 0 {
        Some(Some(utf8(v)?))
    } else if ffi::PyBytes_CheckExact(v) != 0 {
        let s = std::slice::from_raw_parts(
            ffi::PyBytes_AS_STRING(v) as *const u8,
            ffi::Py_SIZE(v) as usize,
        );
        Some(std::str::from_utf8(s).ok().map(|_| s))
    } else {
        None
    }
}

impl HeaderCache {
    pub fn new(resolve: Py<PyAny>, json_default: bool) -> Self {
        HeaderCache {
            resolve,
            cache: HashMap::new(),
            key: Vec::new(),
            json_default,
        }
    }

    pub unsafe fn info(
        &mut self,
        py: Python<'_>,
        h: *mut ffi::PyObject,
    ) -> Option<(u8, Hint, bool)> {
        let (is_list, is_tuple) = (
            ffi::PyList_CheckExact(h) != 0,
            ffi::PyTuple_CheckExact(h) != 0,
        );
        if !is_list && !is_tuple {
            return None;
        }
        let n = if is_list {
            ffi::PyList_GET_SIZE(h)
        } else {
            ffi::PyTuple_GET_SIZE(h)
        };
        let mut found: [Option<&[u8]>; 3] = [None, None, None]; // fg-schema, fg-schema-version, fg-format
        for i in 0..n {
            let item = if is_list {
                ffi::PyList_GET_ITEM(h, i)
            } else {
                ffi::PyTuple_GET_ITEM(h, i)
            };
            if ffi::PyTuple_CheckExact(item) == 0 || ffi::PyTuple_GET_SIZE(item) != 2 {
                return None;
            }
            let (k, v) = (
                ffi::PyTuple_GET_ITEM(item, 0),
                ffi::PyTuple_GET_ITEM(item, 1),
            );
            if ffi::PyUnicode_CheckExact(k) == 0 {
                return None;
            }
            let slot = match utf8(k)? {
                b"fg-schema" => 0,
                b"fg-schema-version" => 1,
                b"fg-format" => 2,
                _ => {
                    value_text(v)?; // odd value types of other headers go back too
                    continue;
                }
            };
            found[slot] = value_text(v)?;
        }
        if n == 0 {
            return Some((0, Hint::None, self.json_default));
        }
        self.key.clear();
        for f in &found {
            match f {
                None => self.key.push(0),
                Some(s) => {
                    self.key.push(1);
                    self.key.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    self.key.extend_from_slice(s);
                }
            }
        }
        if let Some(hit) = self.cache.get(self.key.as_slice()) {
            return Some(*hit);
        }
        let arg = |f: Option<&[u8]>| -> Option<Obj> {
            match f {
                None => Some(crate::objects::none()),
                Some(s) => crate::objects::text(s),
            }
        };
        let args = (
            Bound::from_owned_ptr(py, arg(found[0])?.release()),
            Bound::from_owned_ptr(py, arg(found[1])?.release()),
            Bound::from_owned_ptr(py, arg(found[2])?.release()),
        );
        let (forced, hint, json): (u8, i64, bool) =
            self.resolve.call1(py, args).ok()?.extract(py).ok()?;
        let hint = match hint {
            -1 => Hint::None,
            t if t >= 0 => Hint::Target(t as usize),
            _ => Hint::Back,
        };
        if self.cache.len() < 1024 {
            self.cache.insert(self.key.clone(), (forced, hint, json));
        }
        Some((forced, hint, json))
    }
}
