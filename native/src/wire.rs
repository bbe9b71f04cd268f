//! Avro binary primitives over a byte slice, with the exact decline rules of the Python
//! generated readers (`streams/codecs/fastread.py`): anything unusual is `None`, and the
//! caller hands the message back to the reference decoder.

pub struct Cursor<'a> {
    pub buf: &'a [u8],
    pub p: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8], p: usize) -> Self {
        Cursor { buf, p }
    }

    #[inline]
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.p)?;
        self.p += 1;
        Some(b)
    }

    /// Zig-zag varint of at most 9 bytes (63 bits; a longer one declines, like fastread).
    #[inline]
    pub fn long(&mut self) -> Option<i64> {
        let mut b = self.byte()?;
        let mut n = (b & 127) as u64;
        let mut s = 7u32;
        while b > 127 {
            if s > 56 {
                return None;
            }
            b = self.byte()?;
            n |= ((b & 127) as u64) << s;
            s += 7;
        }
        Some(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    /// Boolean byte: 0 or 1, anything else declines.
    #[inline]
    pub fn boolean(&mut self) -> Option<bool> {
        match self.byte()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    #[inline]
    pub fn float(&mut self) -> Option<f64> {
        let s = self.buf.get(self.p..self.p + 4)?;
        self.p += 4;
        Some(f32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f64)
    }

    #[inline]
    pub fn double(&mut self) -> Option<f64> {
        let s = self.buf.get(self.p..self.p + 8)?;
        self.p += 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Some(f64::from_le_bytes(a))
    }

    /// Length-prefixed bytes (the UTF-8 check happens when the Python str is made).
    #[inline]
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.long()?;
        if n < 0 {
            return None;
        }
        let e = self.p.checked_add(n as usize)?;
        let s = self.buf.get(self.p..e)?;
        self.p = e;
        Some(s)
    }

    /// Union index of a `["null", T]` union: one byte, 0 (null) or 2 (T); else declines.
    #[inline]
    pub fn nullable(&mut self) -> Option<bool> {
        match self.byte()? {
            0 => Some(false),
            2 => Some(true),
            _ => None,
        }
    }

    /// Enum index in `0..count`, else declines.
    #[inline]
    pub fn enum_index(&mut self, count: usize) -> Option<usize> {
        let u = self.long()?;
        if u < 0 || u as u64 >= count as u64 {
            return None;
        }
        Some(u as usize)
    }

    #[inline]
    pub fn at_end(&self) -> bool {
        self.p == self.buf.len()
    }
}
