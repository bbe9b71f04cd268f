//! The device schemas' bodies read straight into `gates.events` records.
//!
//! Each reader is a port of one generated reader of `streams/codecs/fastread.py` plus its
//! builder in `streams/codecs/mapping.py` (`telemetry_from_fields`, `ack_from_fields`), or of
//! fastavro + `records.device_command_from_dict` for device commands: it returns the record
//! those give, or `None` wherever they decline, raise or could differ (then the message goes
//! back to the Python decoder, which produces the record or the exact dead letter).

use crate::objects::{boolean, float, long, new_ref, none, opt_text, text, Obj, Shape};
use crate::wire::Cursor;
use pyo3::ffi;

/// Writer layouts the native decoder reads (checked field by field in Python at start).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    TelemetryV1,
    TelemetryV2,
    AckV1,
    AckV2,
    CommandV1,
}

impl Layout {
    pub fn from_code(code: &str) -> Option<Layout> {
        Some(match code {
            "telemetry.v1" => Layout::TelemetryV1,
            "telemetry.v2" => Layout::TelemetryV2,
            "ack.v1" => Layout::AckV1,
            "ack.v2" => Layout::AckV2,
            "device_command.v1" => Layout::CommandV1,
            _ => return None,
        })
    }

    pub fn checks_time(self) -> bool {
        self != Layout::CommandV1
    }
}

#[derive(Clone, Copy)]
/// Clock-skew bounds of `DecodeLimits` (same comparisons as the Python decoder).
pub struct TimeBounds {
    pub check: bool,
    pub min_et: i64,
    pub max_et: i64,
    pub future: i64,
    pub past: i64,
}

impl TimeBounds {
    #[inline]
    pub fn ok(&self, et: i64, ingest: i64) -> bool {
        if !self.check {
            return true;
        }
        let (et, ing) = (et as i128, ingest as i128);
        !(et < self.min_et as i128
            || et > self.max_et as i128
            || (ing >= 0 && (et - ing > self.future as i128 || ing - et > self.past as i128)))
    }
}

/// Python objects the readers put into records.
pub struct Consts {
    pub telemetry: Shape,
    pub ack: Shape,
    pub command: Shape,
    pub metric_keys: [Obj; 5], // temperature_c, cpu_pct, battery_pct, memory_free_kb, rssi_dbm
    pub ack_states: Vec<Option<Obj>>, // AckStatus per AckState symbol; None: UNKNOWN (use the text)
    pub command_kinds: Vec<Obj>,
    pub target_kinds: Vec<Obj>,
}

/// Everything a reader needs besides the bytes.
pub struct Ctx<'a> {
    pub c: &'a Consts,
    pub time: &'a TimeBounds,
    pub source_format: *mut ffi::PyObject,
    pub ingest: *mut ffi::PyObject, // the message timestamp object, stored as is
    pub ingest_ms: i64,
    /// Free-text ack status -> AckStatus (the Python mapping, cached); None: hand back.
    pub status: &'a mut dyn FnMut(&[u8]) -> Option<Obj>,
}

const HUGE: f64 = 1e300; // metrics this large could make Python's sum() overflow: hand back

#[inline]
fn event_time(et: Option<i64>, ts: i64) -> Option<i64> {
    match et {
        Some(v) => Some(v),
        None => ts.checked_mul(1000),
    }
}

pub unsafe fn read(layout: Layout, buf: &[u8], start: usize, cx: &mut Ctx<'_>) -> Option<Obj> {
    match layout {
        Layout::TelemetryV1 | Layout::TelemetryV2 => {
            telemetry(layout == Layout::TelemetryV2, buf, start, cx)
        }
        Layout::AckV1 | Layout::AckV2 => ack(layout == Layout::AckV2, buf, start, cx),
        Layout::CommandV1 => command(buf, start, cx),
    }
}

unsafe fn telemetry(v2: bool, buf: &[u8], start: usize, cx: &mut Ctx<'_>) -> Option<Obj> {
    let mut r = Cursor::new(buf, start);
    let device_id = r.bytes()?;
    let ts = r.long()?;
    let firmware = r.bytes()?;
    let temperature = r.float()?;
    let cpu = r.float()?;
    let errors = r.long()?;
    let (mut et, mut model, mut config, mut uptime) = (None, None, None, None);
    let (mut reconnects, mut rebooted, mut latency) = (0i64, false, None);
    let mut opt = [None::<f64>; 3]; // battery_pct, memory_free_kb, rssi_dbm
    let mut extra: Vec<(&[u8], f64)> = Vec::new();
    if v2 {
        et = if r.nullable()? { Some(r.long()?) } else { None };
        model = if r.nullable()? {
            Some(r.bytes()?)
        } else {
            None
        };
        config = if r.nullable()? {
            Some(r.bytes()?)
        } else {
            None
        };
        uptime = if r.nullable()? { Some(r.long()?) } else { None };
        reconnects = r.long()?;
        rebooted = r.boolean()?;
        latency = if r.nullable()? {
            Some(r.float()?)
        } else {
            None
        };
        for slot in opt.iter_mut() {
            *slot = if r.nullable()? {
                Some(r.float()?)
            } else {
                None
            };
        }
        loop {
            let c = r.long()?;
            if c == 0 {
                break;
            }
            if c < 0 {
                return None; // a block with a byte size: fastavro's job
            }
            for _ in 0..c {
                let k = r.bytes()?;
                std::str::from_utf8(k).ok()?;
                let v = r.double()?;
                match extra.iter_mut().find(|(ek, _)| *ek == k) {
                    Some(e) => e.1 = v, // a repeated key keeps its first position, last value
                    None => extra.push((k, v)),
                }
            }
        }
    }
    if !r.at_end() || device_id.is_empty() || errors < 0 || reconnects < 0 {
        return None;
    }
    // metrics in the Python order: the two required, the present optional ones, then extras
    // not already present (dict.setdefault)
    const KNOWN: [&[u8]; 5] = [
        b"temperature_c",
        b"cpu_pct",
        b"battery_pct",
        b"memory_free_kb",
        b"rssi_dbm",
    ];
    let present = |k: &[u8]| {
        KNOWN
            .iter()
            .zip([
                true,
                true,
                opt[0].is_some(),
                opt[1].is_some(),
                opt[2].is_some(),
            ])
            .any(|(n, p)| p && *n == k)
    };
    let mut total = temperature + cpu;
    let mut big = temperature.abs() > HUGE || cpu.abs() > HUGE;
    for v in opt.iter().flatten() {
        total += v;
        big |= v.abs() > HUGE;
    }
    for (k, v) in &extra {
        if !present(k) {
            total += v;
            big |= v.abs() > HUGE;
        }
    }
    if big || !total.is_finite() {
        return None;
    }
    let et = event_time(et, ts)?;
    if !cx.time.ok(et, cx.ingest_ms) {
        return None;
    }
    let c = cx.c;
    let metrics = Obj(ffi::PyDict_New());
    let put = |k: *mut ffi::PyObject, v: f64| -> Option<()> {
        let f = float(v);
        (ffi::PyDict_SetItem(metrics.0, k, f.0) == 0).then_some(())
    };
    put(c.metric_keys[0].0, temperature)?;
    put(c.metric_keys[1].0, cpu)?;
    for (i, v) in opt.iter().enumerate() {
        if let Some(v) = v {
            put(c.metric_keys[2 + i].0, *v)?;
        }
    }
    for (k, v) in &extra {
        if !present(k) {
            put(text(k)?.0, *v)?;
        }
    }
    let vals = [
        text(device_id)?,
        long(et),
        new_ref(cx.ingest),
        text(firmware)?,
        new_ref(cx.source_format),
        opt_text(model)?,
        opt_text(config)?,
        uptime.map_or_else(|| none(), |v| long(v)),
        long(reconnects),
        long(errors),
        boolean(rebooted),
        latency.map_or_else(|| none(), |v| float(v)),
        metrics,
    ];
    fill(&c.telemetry, vals)
}

unsafe fn ack(v2: bool, buf: &[u8], start: usize, cx: &mut Ctx<'_>) -> Option<Obj> {
    let mut r = Cursor::new(buf, start);
    let device_id = r.bytes()?;
    let ts = r.long()?;
    let status = r.bytes()?;
    let version = r.bytes()?;
    let (mut et, mut state, mut error_code, mut attempt, mut rollout, mut command) =
        (None, None, None, 1i64, None, None);
    if v2 {
        et = if r.nullable()? { Some(r.long()?) } else { None };
        state =
            cx.c.ack_states
                .get(r.enum_index(cx.c.ack_states.len())?)?
                .as_ref()
                .map(|o| o.0);
        error_code = if r.nullable()? {
            Some(r.bytes()?)
        } else {
            None
        };
        attempt = r.long()?;
        rollout = if r.nullable()? {
            Some(r.bytes()?)
        } else {
            None
        };
        command = if r.nullable()? {
            Some(r.bytes()?)
        } else {
            None
        };
    }
    if !r.at_end() || device_id.is_empty() || attempt < 0 {
        return None;
    }
    let et = event_time(et, ts)?;
    if !cx.time.ok(et, cx.ingest_ms) {
        return None;
    }
    std::str::from_utf8(status).ok()?; // the Python reader decodes it even when unused
    let st = match state {
        Some(p) => new_ref(p),
        None => (cx.status)(status)?,
    };
    let vals = [
        text(device_id)?,
        long(et),
        new_ref(cx.ingest),
        st,
        new_ref(cx.source_format),
        opt_text(rollout)?,
        if version.is_empty() {
            none()
        } else {
            text(version)?
        },
        opt_text(command)?,
        opt_text(error_code)?,
        long(attempt),
    ];
    fill(&cx.c.ack, vals)
}

unsafe fn command(buf: &[u8], start: usize, cx: &mut Ctx<'_>) -> Option<Obj> {
    let mut r = Cursor::new(buf, start);
    let command_id = r.bytes()?;
    let device_id = r.bytes()?;
    let rollout = r.bytes()?;
    let stage = r.long()?;
    let kind = r.enum_index(cx.c.command_kinds.len())?;
    let target_kind = r.enum_index(cx.c.target_kinds.len())?;
    let version = r.bytes()?;
    let issued = r.long()?;
    if !r.at_end() {
        return None;
    }
    let c = cx.c;
    let vals = [
        text(command_id)?,
        text(device_id)?,
        text(rollout)?,
        long(stage),
        new_ref(c.command_kinds[kind].0),
        new_ref(c.target_kinds[target_kind].0),
        text(version)?,
        long(issued),
    ];
    fill(&c.command, vals)
}

#[inline]
pub unsafe fn fill<const N: usize>(shape: &Shape, vals: [Obj; N]) -> Option<Obj> {
    if vals.iter().any(|v| v.0.is_null()) {
        ffi::PyErr_Clear();
        return None;
    }
    let o = shape.alloc()?;
    for (i, v) in vals.into_iter().enumerate() {
        shape.set(o.0, i, v);
    }
    Some(o)
}
