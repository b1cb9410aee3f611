//! The canonical byte encoding that catalog records are signed over.
//!
//! ```text
//! magic "AEPG" ‖ format version 0x01 ‖ record kind (1 byte) ‖ fields
//! u8, u32, i32, u64 fields: fixed width, big-endian
//! lists:               u32 BE count ‖ items
//! text fields:         u16 BE length ‖ UTF-8 bytes
//! byte-string fields:  u32 BE length ‖ bytes
//! ```
//!
//! Every value has exactly one encoding and decoding consumes every byte, so
//! a signature over the encoding is a signature over the record's meaning.

use super::RecordError;

const MAGIC: &[u8; 4] = b"AEPG";
/// Version of the canonical record encoding.
pub const RECORD_FORMAT_VERSION: u8 = 0x01;

/// The kinds of signed catalog record, each with its own tag byte so a
/// signature over one kind can never be replayed as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordKind {
    /// A column encryption key wrapped by a column master key.
    WrappedColumnKey,
    /// A column encryption setting.
    EncryptionSetting,
    /// The assignment of a column to a setting.
    ColumnAssignment,
    /// The signed set of every encrypted column at one catalog generation.
    ColumnManifest,
    /// A column key rotation under way: a setting's key and its successor.
    KeyRotation,
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl RecordKind {
    fn tag(self) -> u8 {
        match self {
            Self::WrappedColumnKey => 0x01,
            Self::EncryptionSetting => 0x02,
            Self::ColumnAssignment => 0x03,
            Self::ColumnManifest => 0x04,
            Self::KeyRotation => 0x05,
        }
    }

    /// The kind's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::WrappedColumnKey => "wrapped column key",
            Self::EncryptionSetting => "column encryption setting",
            Self::ColumnAssignment => "column assignment",
            Self::ColumnManifest => "column manifest",
            Self::KeyRotation => "column key rotation",
        }
    }
}

/// Writes the fields of one record in canonical order.
pub(crate) struct RecordWriter {
    bytes: Vec<u8>,
    kind: RecordKind,
}

impl RecordWriter {
    pub(crate) fn new(kind: RecordKind) -> Self {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(MAGIC);
        bytes.push(RECORD_FORMAT_VERSION);
        bytes.push(kind.tag());
        Self { bytes, kind }
    }

    pub(crate) fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }

    pub(crate) fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn i32(&mut self, value: i32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// The number of items that follow, as a `u32`.
    ///
    /// # Errors
    /// [`RecordError::Malformed`] for 2³² items or more.
    pub(crate) fn count(&mut self, count: usize) -> Result<&mut Self, RecordError> {
        let count = u32::try_from(count).map_err(|_| self.malformed("too many items"))?;
        Ok(self.u32(count))
    }

    /// # Errors
    /// [`RecordError::Malformed`] for text longer than 65 535 bytes.
    pub(crate) fn text(&mut self, value: &str) -> Result<&mut Self, RecordError> {
        let len = u16::try_from(value.len())
            .map_err(|_| self.malformed("text field longer than 65535 bytes"))?;
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
        Ok(self)
    }

    /// # Errors
    /// [`RecordError::Malformed`] for byte strings of 4 GiB or more.
    pub(crate) fn bytes(&mut self, value: &[u8]) -> Result<&mut Self, RecordError> {
        let len = u32::try_from(value.len())
            .map_err(|_| self.malformed("byte field of 4 GiB or more"))?;
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(value);
        Ok(self)
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }

    fn malformed(&self, reason: &'static str) -> RecordError {
        RecordError::Malformed {
            kind: self.kind,
            reason,
        }
    }
}

/// Reads the fields of one record, strictly: every malformation is an error.
pub(crate) struct RecordReader<'a> {
    rest: &'a [u8],
    kind: RecordKind,
}

impl<'a> RecordReader<'a> {
    /// Checks magic, version and kind.
    pub(crate) fn new(bytes: &'a [u8], kind: RecordKind) -> Result<Self, RecordError> {
        let mut reader = Self { rest: bytes, kind };
        if reader.take(MAGIC.len())? != MAGIC {
            return Err(reader.malformed("not an aepg record"));
        }
        if reader.u8()? != RECORD_FORMAT_VERSION {
            return Err(reader.malformed("unknown record format version"));
        }
        if reader.u8()? != kind.tag() {
            return Err(reader.malformed("record is of another kind"));
        }
        Ok(reader)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn text(&mut self) -> Result<String, RecordError> {
        let len = u16::from_be_bytes(self.array()?);
        let bytes = self.take(usize::from(len))?;
        let text =
            std::str::from_utf8(bytes).map_err(|_| self.malformed("text field is not UTF-8"))?;
        Ok(text.to_owned())
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, RecordError> {
        let len = u32::from_be_bytes(self.array()?);
        let len = usize::try_from(len).map_err(|_| self.malformed("byte field too long"))?;
        Ok(self.take(len)?.to_vec())
    }

    /// The next byte, left unread.
    pub(crate) fn peek_u8(&self) -> Result<u8, RecordError> {
        self.rest
            .first()
            .copied()
            .ok_or_else(|| self.malformed("record ends in the middle of a field"))
    }

    /// Ends reading; trailing bytes are an error.
    pub(crate) fn finish(self) -> Result<(), RecordError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.malformed("trailing bytes after the last field"))
        }
    }

    pub(crate) fn malformed(&self, reason: &'static str) -> RecordError {
        RecordError::Malformed {
            kind: self.kind,
            reason,
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], RecordError> {
        if self.rest.len() < len {
            return Err(self.malformed("record ends in the middle of a field"));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }
}
