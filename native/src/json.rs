//! Legacy JSON telemetry (`{"id": ..., "t": ..., "fw": ..., "temp": ...}`) for the common case
//! the Python fast path takes (`jsonform.loads_plain_object` + `mapping.telemetry_from_legacy_obj`):
//! one flat object, `{` first and `}` last. Only a strict subset of JSON is read here --
//! no escapes, no nesting, numbers in `json`'s grammar -- and anything outside it, or any
//! value the Python builder would reject or convert otherwise, hands the message back.

use crate::objects::{boolean, float, long, new_ref, none, text, Obj};
use crate::records::{fill, Consts, TimeBounds};
use pyo3::ffi;

#[derive(Clone, Copy)]
enum V<'a> {
    Str(&'a [u8]),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

struct P<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> P<'a> {
    #[inline]
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// A string with no escapes and no control characters (the text is valid UTF-8).
    fn string(&mut self) -> Option<&'a [u8]> {
        if self.peek()? != b'"' {
            return None;
        }
        let s = self.i + 1;
        let mut j = s;
        loop {
            let c = *self.b.get(j)?;
            if c == b'"' {
                break;
            }
            if c == b'\\' || c < 0x20 {
                return None;
            }
            j += 1;
        }
        self.i = j + 1;
        Some(&self.b[s..j])
    }

    fn digits(&mut self) -> usize {
        let s = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        self.i - s
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`, like `json`'s scanner; an int
    /// beyond 64 bits hands back.
    fn number(&mut self) -> Option<V<'a>> {
        let s = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') && self.b.get(self.i + 1).is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
            self.digits();
            is_float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let e = self.i;
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() > 0 {
                is_float = true;
            } else {
                self.i = e; // not an exponent: the object parse then fails and hands back
            }
        }
        let t = std::str::from_utf8(&self.b[s..self.i]).ok()?;
        if is_float {
            Some(V::Float(t.parse().ok()?))
        } else {
            Some(V::Int(t.parse().ok()?))
        }
    }

    fn lit(&mut self, w: &[u8], v: V<'a>) -> Option<V<'a>> {
        if self.b.get(self.i..self.i + w.len())? == w {
            self.i += w.len();
            Some(v)
        } else {
            None
        }
    }

    fn value(&mut self) -> Option<V<'a>> {
        match self.peek()? {
            b'"' => Some(V::Str(self.string()?)),
            b't' => self.lit(b"true", V::Bool(true)),
            b'f' => self.lit(b"false", V::Bool(false)),
            b'n' => self.lit(b"null", V::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None, // nested values, NaN/Infinity, anything else
        }
    }
}

const KEYS: [&[u8]; 9] = [
    b"id", b"t", b"fw", b"err", b"rc", b"boot", b"temp", b"cpu", b"bat",
];
const INT_MAX: i64 = (1 << 31) - 1;

/// The object's fields of interest (last duplicate wins, like a dict), or None: hand back.
fn parse(b: &[u8]) -> Option<[Option<V<'_>>; 9]> {
    std::str::from_utf8(b).ok()?;
    let mut p = P { b, i: 1 };
    let mut out: [Option<V<'_>>; 9] = [None; 9];
    p.ws();
    if p.peek()? == b'}' {
        p.i += 1;
    } else {
        loop {
            let k = p.string()?;
            p.ws();
            if p.peek()? != b':' {
                return None;
            }
            p.i += 1;
            p.ws();
            let v = p.value()?;
            if let Some(slot) = KEYS.iter().position(|n| *n == k) {
                out[slot] = Some(v);
            }
            p.ws();
            match p.peek()? {
                b',' => {
                    p.i += 1;
                    p.ws();
                }
                b'}' => {
                    p.i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (p.i == b.len()).then_some(out)
}

/// A metric value as `telemetry_from_legacy_obj` converts it: Some(None) absent or null.
fn metric(v: Option<V<'_>>) -> Option<Option<f64>> {
    let f = match v {
        None | Some(V::Null) => return Some(None),
        Some(V::Int(i)) => i as f64,
        Some(V::Float(f)) => f,
        _ => return None,
    };
    f.is_finite().then_some(Some(f))
}

pub unsafe fn legacy(
    b: &[u8],
    c: &Consts,
    time: &TimeBounds,
    sf: *mut ffi::PyObject,
    ingest: *mut ffi::PyObject,
    ingest_ms: i64,
) -> Option<Obj> {
    if b.len() < 2 || b[0] != b'{' || b[b.len() - 1] != b'}' {
        return None;
    }
    let f = parse(b)?;
    let (Some(V::Str(id)), Some(V::Int(t)), Some(V::Str(fw))) = (f[0], f[1], f[2]) else {
        return None;
    };
    let int_or = |v: Option<V<'_>>, d: i64| match v {
        None => Some(d),
        Some(V::Int(i)) if (0..=INT_MAX).contains(&i) => Some(i),
        _ => None,
    };
    let errors = int_or(f[3], 0)?;
    let reconnects = int_or(f[4], 0)?;
    let rebooted = match f[5] {
        None => false,
        Some(V::Bool(x)) => x,
        _ => return None,
    };
    if id.is_empty() {
        return None;
    }
    let m = [metric(f[6])?, metric(f[7])?, metric(f[8])?];
    let et = t.checked_mul(1000)?;
    if !time.ok(et, ingest_ms) {
        return None;
    }
    let metrics = Obj(ffi::PyDict_New());
    for (i, v) in m.iter().enumerate() {
        if let Some(v) = v {
            let x = float(*v);
            if x.0.is_null() || ffi::PyDict_SetItem(metrics.0, c.metric_keys[i].0, x.0) != 0 {
                ffi::PyErr_Clear();
                return None;
            }
        }
    }
    let vals = [
        text(id)?,
        long(et),
        new_ref(ingest),
        text(fw)?,
        new_ref(sf),
        none(),
        none(),
        none(),
        long(reconnects),
        long(errors),
        boolean(rebooted),
        none(),
        metrics,
    ];
    fill(&c.telemetry, vals)
}
