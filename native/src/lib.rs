//! fleetgate_native: the compiled hot path of `streams.codecs.Decoder.decode_batch`.
//!
//! A batch of messages (consumer tuples or `confluent_kafka.Message`s) in; out come the
//! canonical records of every message this module can read *exactly* like the Python
//! decoder, and the indexes of all the others, which the Python decoder (the reference)
//! then decodes itself: anything unusual -- an unknown schema, a dead letter, a consumer
//! error, odd header types, JSON -- goes back, so records and dead letters stay the
//! reference's by construction.

mod headers;
mod json;
mod objects;
mod records;
mod wire;

use headers::{HeaderCache, Hint};
use objects::{new_ref, Obj, Shape};
use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use records::{Consts, Ctx, Layout, TimeBounds};
use std::collections::HashMap;

const F_NONE: u8 = 0;
const F_CONFLUENT: u8 = 1;
const F_SINGLE: u8 = 2;
const F_JSON: u8 = 3;
const F_AVRO: u8 = 4;

struct Target {
    layout: Layout,
    source_format: Obj,
}

/// One stream kind's native decoder; built by `streams/codecs/native.py`.
#[pyclass(module = "fleetgate_native")]
struct BatchDecoder {
    targets: Vec<Target>,
    by_id: HashMap<u32, usize>,
    by_fp: HashMap<[u8; 8], usize>,
    max_bytes: usize,
    time: TimeBounds,
    consts: Consts,
    headers: HeaderCache,
    status_from_text: Py<PyAny>,
    json_default: bool,
    json_source_format: Obj,
    status_cache: HashMap<Vec<u8>, Obj>,
    names: [Py<PyAny>; 4], // "error", "value", "headers", "timestamp"
}

fn objs(v: &Bound<'_, PyAny>) -> PyResult<Vec<Obj>> {
    let mut out = Vec::new();
    for x in v.try_iter()? {
        out.push(unsafe { new_ref(x?.as_ptr()) });
    }
    Ok(out)
}

// SAFETY: the raw object pointers inside are only touched with the GIL held (a GIL build: no
// free-threading support is declared), and pyo3's borrow flag keeps `decode` from running twice
// at once on one decoder. Workers create decoders in one thread and decode in another.
unsafe impl Send for BatchDecoder {}
unsafe impl Sync for BatchDecoder {}

#[pymethods]
impl BatchDecoder {
    /// `targets`: [(layout code, SourceFormat)]; `by_id` / `by_fp`: Confluent id /
    /// fingerprint -> target index; `limits`: (max bytes, check time, min, max, future, past);
    /// `classes`: {"Telemetry", "Ack", "DeviceCommand"} -> class; `enums`: {"ack_states",
    /// "command_kinds", "target_kinds"} -> lists; `resolve_headers(name, version, format)`
    /// -> (forced framing code, target index | -1 none | -2 hand back);
    /// `status_from_text(str)` -> AckStatus; `json_default`: unlabelled JSON is legacy
    /// telemetry (read here, with `json_source_format`), as are labelled JSON payloads
    /// whose `resolve_headers` answer says so (a third item).
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        targets: Vec<(String, Py<PyAny>)>,
        by_id: HashMap<u32, usize>,
        by_fp: HashMap<Vec<u8>, usize>,
        limits: (usize, bool, i64, i64, i64, i64),
        classes: &Bound<'_, PyDict>,
        enums: &Bound<'_, PyDict>,
        resolve_headers: Py<PyAny>,
        status_from_text: Py<PyAny>,
        json_default: bool,
        json_source_format: Py<PyAny>,
    ) -> PyResult<Self> {
        let mut ts = Vec::new();
        for (code, sf) in targets {
            let layout = Layout::from_code(&code)
                .ok_or_else(|| PyValueError::new_err(format!("unknown layout {code}")))?;
            ts.push(Target {
                layout,
                source_format: unsafe { new_ref(sf.as_ptr()) },
            });
        }
        let n = ts.len();
        if by_id.values().chain(by_fp.values()).any(|&i| i >= n) {
            return Err(PyValueError::new_err("target index out of range"));
        }
        let mut fps = HashMap::new();
        for (k, v) in by_fp {
            let k: [u8; 8] = k
                .try_into()
                .map_err(|_| PyValueError::new_err("a fingerprint is 8 bytes"))?;
            fps.insert(k, v);
        }
        let cls = |name: &str| -> PyResult<Bound<'_, PyAny>> {
            classes
                .get_item(name)?
                .ok_or_else(|| PyValueError::new_err(format!("no class {name}")))
        };
        let en = |name: &str| -> PyResult<Bound<'_, PyAny>> {
            enums
                .get_item(name)?
                .ok_or_else(|| PyValueError::new_err(format!("no enum list {name}")))
        };
        let telemetry = Shape::new(
            py,
            &cls("Telemetry")?,
            &[
                "device_id",
                "event_time_ms",
                "ingest_time_ms",
                "firmware_version",
                "source_format",
                "model",
                "config_version",
                "uptime_s",
                "reconnects",
                "errors",
                "rebooted",
                "command_latency_ms",
                "metrics",
            ],
        )?;
        let ack = Shape::new(
            py,
            &cls("Ack")?,
            &[
                "device_id",
                "event_time_ms",
                "ingest_time_ms",
                "status",
                "source_format",
                "rollout_id",
                "target_version",
                "command_id",
                "error_code",
                "attempt",
            ],
        )?;
        let command = Shape::new(
            py,
            &cls("DeviceCommand")?,
            &[
                "command_id",
                "device_id",
                "rollout_id",
                "stage",
                "kind",
                "target_kind",
                "target_version",
                "issued_at_ms",
            ],
        )?;
        let key = |s: &str| unsafe {
            let k = Obj(ffi::PyUnicode_FromStringAndSize(
                s.as_ptr() as *const _,
                s.len() as ffi::Py_ssize_t,
            ));
            let mut p = k.release();
            ffi::PyUnicode_InternInPlace(&mut p);
            Obj(p)
        };
        let mut ack_states = Vec::new();
        for x in en("ack_states")?.try_iter()? {
            let x = x?;
            ack_states.push(if x.is_none() {
                None
            } else {
                Some(unsafe { new_ref(x.as_ptr()) })
            });
        }
        let consts = Consts {
            telemetry,
            ack,
            command,
            metric_keys: [
                key("temperature_c"),
                key("cpu_pct"),
                key("battery_pct"),
                key("memory_free_kb"),
                key("rssi_dbm"),
            ],
            ack_states,
            command_kinds: objs(&en("command_kinds")?)?,
            target_kinds: objs(&en("target_kinds")?)?,
        };
        let (max_bytes, check, min_et, max_et, future, past) = limits;
        let name = |s: &str| pyo3::types::PyString::intern(py, s).into_any().unbind();
        Ok(BatchDecoder {
            targets: ts,
            by_id,
            by_fp: fps,
            max_bytes,
            time: TimeBounds {
                check,
                min_et,
                max_et,
                future,
                past,
            },
            consts,
            headers: HeaderCache::new(resolve_headers, json_default),
            status_from_text,
            json_default,
            json_source_format: unsafe { new_ref(json_source_format.as_ptr()) },
            status_cache: HashMap::new(),
            names: [
                name("error"),
                name("value"),
                name("headers"),
                name("timestamp"),
            ],
        })
    }

    /// `messages` (a list or tuple) -> `(records, back)`: the records read here, in input
    /// order, and `[(message index, records before it)]` for the messages handed back
    /// (None when there are none).
    fn decode<'py>(
        &mut self,
        py: Python<'py>,
        messages: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, Py<PyAny>)> {
        let seq: Vec<Bound<'py, PyAny>> = if let Ok(l) = messages.cast::<PyList>() {
            l.iter().collect()
        } else {
            messages.cast::<PyTuple>()?.iter().collect()
        };
        let out = PyList::empty(py);
        let mut back: Vec<(usize, usize)> = Vec::new();
        let mut n_out = 0usize;
        for (i, m) in seq.iter().enumerate() {
            match unsafe { self.one(py, m) } {
                Some(rec) => {
                    unsafe {
                        if ffi::PyList_Append(out.as_ptr(), rec.0) != 0 {
                            return Err(PyErr::fetch(py));
                        }
                    }
                    n_out += 1;
                }
                None => back.push((i, n_out)),
            }
        }
        let back = if back.is_empty() {
            py.None()
        } else {
            back.into_pyobject(py)?.into_any().unbind()
        };
        Ok((out, back))
    }
}

impl BatchDecoder {
    /// One message -> its record, or None: hand it back to the Python decoder.
    unsafe fn one(&mut self, py: Python<'_>, m: &Bound<'_, PyAny>) -> Option<Obj> {
        let mp = m.as_ptr();
        let (value, headers, ts);
        if ffi::PyTuple_CheckExact(mp) != 0 {
            if ffi::PyTuple_GET_SIZE(mp) < 3 {
                return None;
            }
            value = new_ref(ffi::PyTuple_GET_ITEM(mp, 0));
            headers = new_ref(ffi::PyTuple_GET_ITEM(mp, 1));
            ts = new_ref(ffi::PyTuple_GET_ITEM(mp, 2));
        } else {
            let call = |i: usize| -> Option<Obj> {
                let r = ffi::PyObject_CallMethodNoArgs(mp, self.names[i].as_ptr());
                if r.is_null() {
                    ffi::PyErr_Clear();
                    return None;
                }
                Some(Obj(r))
            };
            if call(0)?.0 != ffi::Py_None() {
                return None; // consumer errors and partition EOF: the reference handles them
            }
            value = call(1)?;
            headers = call(2)?;
            let t = call(3)?;
            if ffi::PyTuple_CheckExact(t.0) == 0 || ffi::PyTuple_GET_SIZE(t.0) != 2 {
                return None;
            }
            ts = new_ref(ffi::PyTuple_GET_ITEM(t.0, 1));
        }
        if ffi::PyBytes_CheckExact(value.0) == 0 || ffi::PyLong_CheckExact(ts.0) == 0 {
            return None;
        }
        let ingest_ms = ffi::PyLong_AsLongLong(ts.0);
        if ingest_ms == -1 && !ffi::PyErr_Occurred().is_null() {
            ffi::PyErr_Clear();
            return None;
        }
        let buf = std::slice::from_raw_parts(
            ffi::PyBytes_AS_STRING(value.0) as *const u8,
            ffi::Py_SIZE(value.0) as usize,
        );
        let n = buf.len();
        if n == 0 || n > self.max_bytes {
            return None;
        }
        let (forced, hint, json) = if headers.0 == ffi::Py_None() {
            (F_NONE, Hint::None, self.json_default)
        } else {
            self.headers.info(py, headers.0)?
        };
        let b0 = buf[0];
        let (target, start) = if b0 == 0 && (forced == F_NONE || forced == F_CONFLUENT) {
            if n < 5 {
                return None;
            }
            let sid = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
            (*self.by_id.get(&sid)?, 5)
        } else if b0 == 0xC3 && n > 1 && buf[1] == 1 && (forced == F_NONE || forced == F_SINGLE) {
            if n < 10 {
                return None;
            }
            let fp: [u8; 8] = buf[2..10].try_into().ok()?;
            (*self.by_fp.get(&fp)?, 10)
        } else if forced == F_JSON || (forced == F_NONE && (b0 == b'{' || json_after_ws(buf))) {
            if !json {
                return None;
            }
            return json::legacy(
                buf,
                &self.consts,
                &self.time,
                self.json_source_format.0,
                ts.0,
                ingest_ms,
            );
        } else if forced == F_NONE || forced == F_AVRO {
            match hint {
                Hint::Target(t) => (t, 0),
                _ => return None,
            }
        } else {
            return None;
        };
        let t = &self.targets[target];
        let time = TimeBounds {
            check: self.time.check && t.layout.checks_time(),
            ..self.time
        };
        let (cache, func) = (&mut self.status_cache, &self.status_from_text);
        let mut status = |s: &[u8]| -> Option<Obj> { status_text(py, cache, func, s) };
        let mut cx = Ctx {
            c: &self.consts,
            time: &time,
            source_format: t.source_format.0,
            ingest: ts.0,
            ingest_ms,
            status: &mut status,
        };
        records::read(t.layout, buf, start, &mut cx)
    }
}

/// Leading JSON whitespace then `{` (a bare Avro body may start with a whitespace byte).
fn json_after_ws(buf: &[u8]) -> bool {
    buf.iter().find(|c| !b" \t\r\n".contains(c)) == Some(&b'{') && b" \t\r\n".contains(&buf[0])
}

/// AckStatus of a free-text status through the Python mapping, cached (bounded).
unsafe fn status_text(
    py: Python<'_>,
    cache: &mut HashMap<Vec<u8>, Obj>,
    func: &Py<PyAny>,
    s: &[u8],
) -> Option<Obj> {
    if let Some(o) = cache.get(s) {
        return Some(new_ref(o.0));
    }
    let t = objects::text(s)?;
    let r = ffi::PyObject_CallOneArg(func.as_ptr(), t.0);
    if r.is_null() {
        PyErr::fetch(py);
        return None;
    }
    let r = Obj(r);
    if cache.len() < 4096 {
        cache.insert(s.to_vec(), new_ref(r.0));
    }
    Some(r)
}

#[pymodule]
fn fleetgate_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<BatchDecoder>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
