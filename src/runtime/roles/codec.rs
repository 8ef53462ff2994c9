//! Compact little-endian byte encodings of the objects that cross process boundaries
//! (parameter snapshots, experience blocks, replayed batches, tagged gradients, replay contents).
//!
//! Every encoding starts with the 4-byte magic `MPG` + a kind byte, then a format byte; a
//! vector is its length (`u64`) followed by its elements; an optional value is a `0`/`1` byte
//! followed by the value. Decoding checks the magic, kind, format and lengths and fails with a
//! message naming what was expected instead of panicking.

use anyhow::{Result, bail, ensure};

/// Format version of every encoding here.
const FORMAT: u8 = 1;

/// What an encoding holds (its kind byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Snapshot = b'S',
    Experience = b'E',
    Batch = b'B',
    Grads = b'G',
    Replay = b'R',
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Snapshot => "parameter snapshot",
            Self::Experience => "experience block",
            Self::Batch => "replay batch",
            Self::Grads => "tagged gradient",
            Self::Replay => "replay buffer",
        }
    }
}

/// Appends values to a byte vector.
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    /// A writer whose bytes start with the header of `kind`.
    pub(crate) fn new(kind: Kind, capacity: usize) -> Self {
        let mut v = Vec::with_capacity(capacity + 5);
        v.extend_from_slice(b"MPG");
        v.push(kind as u8);
        v.push(FORMAT);
        Self(v)
    }

    pub(crate) fn u64(&mut self, x: u64) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }

    pub(crate) fn f64(&mut self, x: f64) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }

    pub(crate) fn f32(&mut self, x: f32) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }

    pub(crate) fn flag(&mut self, on: bool) {
        self.0.push(on as u8);
    }

    pub(crate) fn f32s(&mut self, xs: &[f32]) {
        self.u64(xs.len() as u64);
        let start = self.0.len();
        self.0.resize(start + xs.len() * 4, 0);
        // Element-wise into a sized slice: compiled to a plain copy on little-endian hosts.
        for (b, x) in self.0[start..].chunks_exact_mut(4).zip(xs) {
            b.copy_from_slice(&x.to_le_bytes());
        }
    }

    pub(crate) fn bools(&mut self, xs: &[bool]) {
        self.u64(xs.len() as u64);
        self.0.extend(xs.iter().map(|&b| b as u8));
    }

    pub(crate) fn opt_f64(&mut self, x: Option<f64>) {
        self.flag(x.is_some());
        if let Some(x) = x {
            self.f64(x);
        }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads values written by a [`Writer`], failing on truncated or foreign input.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    kind: Kind,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes`, which must start with the header of `kind`.
    pub(crate) fn new(bytes: &'a [u8], kind: Kind) -> Result<Self> {
        ensure!(
            bytes.len() >= 5 && &bytes[..3] == b"MPG",
            "not a mixpg {}: the bytes do not start with the mixpg magic",
            kind.name()
        );
        ensure!(
            bytes[3] == kind as u8,
            "not a mixpg {}: kind byte {:?}",
            kind.name(),
            bytes[3] as char
        );
        ensure!(
            bytes[4] == FORMAT,
            "mixpg {} in format {} (this build reads format {FORMAT})",
            kind.name(),
            bytes[4]
        );
        Ok(Self { bytes, at: 5, kind })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            bail!(
                "truncated mixpg {}: {} bytes, needed {} more at offset {}",
                self.kind.name(),
                self.bytes.len(),
                n,
                self.at
            );
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }

    pub(crate) fn usize(&mut self) -> Result<usize> {
        Ok(usize::try_from(self.u64()?)?)
    }

    pub(crate) fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into()?))
    }

    pub(crate) fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into()?))
    }

    pub(crate) fn flag(&mut self) -> Result<bool> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => bail!("corrupt mixpg {}: flag byte {b}", self.kind.name()),
        }
    }

    /// A length that must fit in the remaining bytes at `size` bytes per element.
    fn len(&mut self, size: usize) -> Result<usize> {
        let n = self.usize()?;
        let left = self.bytes.len() - self.at;
        ensure!(
            n.checked_mul(size).is_some_and(|b| b <= left),
            "truncated mixpg {}: a vector of {n} elements with {left} bytes left",
            self.kind.name()
        );
        Ok(n)
    }

    pub(crate) fn f32s(&mut self) -> Result<Vec<f32>> {
        let n = self.len(4)?;
        let raw = self.take(n * 4)?;
        let mut xs = vec![0.0; n];
        // Element-wise into a sized vector: compiled to a plain copy on little-endian hosts.
        for (x, b) in xs.iter_mut().zip(raw.chunks_exact(4)) {
            *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(xs)
    }

    pub(crate) fn bools(&mut self) -> Result<Vec<bool>> {
        let n = self.len(1)?;
        self.take(n)?
            .iter()
            .map(|&b| match b {
                0 => Ok(false),
                1 => Ok(true),
                _ => bail!("corrupt mixpg {}: flag byte {b}", self.kind.name()),
            })
            .collect()
    }

    pub(crate) fn opt_f64(&mut self) -> Result<Option<f64>> {
        Ok(if self.flag()? {
            Some(self.f64()?)
        } else {
            None
        })
    }

    /// A vector count (element size unknown: at least one byte each).
    pub(crate) fn count(&mut self) -> Result<usize> {
        self.len(1)
    }

    /// Fail unless every byte was read.
    pub(crate) fn end(self) -> Result<()> {
        ensure!(
            self.at == self.bytes.len(),
            "corrupt mixpg {}: {} trailing bytes",
            self.kind.name(),
            self.bytes.len() - self.at
        );
        Ok(())
    }
}
