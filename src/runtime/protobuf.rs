//! The few lines of protocol buffers that TensorBoard event files and ONNX models need: an
//! encoder of messages field by field, and a decoder of one message's fields (to cut event files
//! on resume).

use anyhow::{Result, bail};

/// A protobuf message being encoded; fields are appended in the order they are given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Message(Vec<u8>);

/// Wire types.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Message {
    /// An empty message.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, field: u32, wire: u64) {
        put_varint(&mut self.0, (u64::from(field) << 3) | wire);
    }

    /// A varint field (`int32`, `int64`, `uint64`, `bool`, enums; negative numbers as their
    /// 64-bit two's complement, as protobuf encodes `int64`).
    pub(crate) fn int(mut self, field: u32, v: i64) -> Self {
        self.key(field, VARINT);
        put_varint(&mut self.0, v as u64);
        self
    }

    /// A `double` field.
    pub(crate) fn double(mut self, field: u32, v: f64) -> Self {
        self.key(field, FIXED64);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A `float` field.
    pub(crate) fn float(mut self, field: u32, v: f32) -> Self {
        self.key(field, FIXED32);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A `bytes` field.
    pub(crate) fn bytes(mut self, field: u32, v: &[u8]) -> Self {
        self.key(field, LEN);
        put_varint(&mut self.0, v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }

    /// A `string` field.
    pub(crate) fn string(self, field: u32, v: &str) -> Self {
        self.bytes(field, v.as_bytes())
    }

    /// An embedded message field.
    pub(crate) fn message(self, field: u32, m: Message) -> Self {
        self.bytes(field, &m.0)
    }

    /// The encoded bytes.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = buf.get(*pos) else {
            bail!("truncated varint");
        };
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    bail!("varint longer than 10 bytes")
}

/// A decoded field's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Field<'a> {
    /// A varint.
    Varint(u64),
    /// A fixed-size number (`double`, `float`, fixed integers), not decoded.
    Fixed,
    /// A length-delimited value: bytes, a string or an embedded message.
    Bytes(&'a [u8]),
}

/// The top-level fields of the encoded message `buf` as `(number, value)`, in order; an error
/// on malformed input.
pub(crate) fn fields(buf: &[u8]) -> Result<Vec<(u32, Field<'_>)>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = get_varint(buf, &mut pos)?;
        let number = u32::try_from(key >> 3)?;
        let (value, skip) = match key & 7 {
            VARINT => (Field::Varint(get_varint(buf, &mut pos)?), 0),
            FIXED64 => (Field::Fixed, 8),
            FIXED32 => (Field::Fixed, 4),
            LEN => (
                Field::Bytes(&[]),
                usize::try_from(get_varint(buf, &mut pos)?)?,
            ),
            w => bail!("unsupported wire type {w}"),
        };
        let end = pos
            .checked_add(skip)
            .filter(|&p| p <= buf.len())
            .ok_or_else(|| anyhow::anyhow!("truncated field"))?;
        let value = match value {
            Field::Bytes(_) => Field::Bytes(&buf[pos..end]),
            v => v,
        };
        out.push((number, value));
        pos = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_protobuf_documentation_examples() {
        // "A Simple Message" (field 1 = 150) and a string field 2 = "testing".
        assert_eq!(Message::new().int(1, 150).into_bytes(), [0x08, 0x96, 0x01]);
        assert_eq!(
            Message::new().string(2, "testing").into_bytes(),
            [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']
        );
        // A negative int64 takes ten bytes.
        assert_eq!(Message::new().int(1, -1).into_bytes().len(), 11);
    }

    #[test]
    fn decodes_the_fields_it_encodes() {
        let m = Message::new()
            .double(1, 1.5)
            .string(3, "x")
            .float(4, 2.0)
            .int(2, 1 << 40)
            .message(5, Message::new().int(2, 7))
            .into_bytes();
        let f = fields(&m).unwrap();
        let numbers: Vec<u32> = f.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 3, 4, 2, 5]);
        assert_eq!(f[1].1, Field::Bytes(b"x"));
        assert_eq!(f[3].1, Field::Varint(1 << 40));
        let Field::Bytes(inner) = f[4].1 else {
            panic!("field 5 is a message")
        };
        assert_eq!(fields(inner).unwrap(), [(2, Field::Varint(7))]);
        assert!(fields(&m[..m.len() - 1]).is_err());
    }
}
