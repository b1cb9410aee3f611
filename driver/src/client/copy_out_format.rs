//! PostgreSQL's binary `COPY … TO STDOUT` format, read as the rows
//! arrive: the header at the start of the first message, one row a
//! message, then the trailer, after which the COPY is read to its end.
//!
//! [`CopyOutRows`] hands on each row's message whole; [`Fields`] locates a
//! row's values where the row is decrypted, straight into the values its
//! batch shares (`Decrypted::push_row`). So a row costs no allocation of
//! its own: tokio-postgres's `BinaryCopyOutStream` allocated a vector of
//! value ranges and cloned a reference count for every row.
//!
//! The data comes from the server, which the threat model does not trust:
//! every length is checked against what is there, a row must hold exactly
//! the columns the statement was planned with and nothing after them, and
//! a malformed header ends the stream with [`Error::CopyData`].

use std::ops::Range;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::Stream;

use crate::Error;

/// The binary format's signature, the first bytes of its header.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Flag bits a reader must not ignore: 0–15 signal incompatible format
/// changes, bit 16 that rows carry OIDs (never asked for, and no longer
/// sent since PostgreSQL 12).
const CRITICAL_FLAGS: u32 = 0x0001_ffff;

/// A row's field count that marks the end of the data.
const TRAILER: [u8; 2] = (-1_i16).to_be_bytes();

fn malformed(reason: impl Into<String>) -> Error {
    Error::CopyData {
        reason: reason.into(),
    }
}

/// The rows of a binary `COPY … TO STDOUT`: each row's message, from its
/// field count on. After the trailer the COPY is read to its end (a
/// server error, or data after the trailer, is then the last item); the
/// first error is the last item.
pub(crate) struct CopyOutRows<S> {
    messages: Pin<Box<S>>,
    header_read: bool,
    trailer_read: bool,
    ended: bool,
}

impl<S> CopyOutRows<S> {
    /// The rows of `messages`, the data of a binary `COPY … TO STDOUT`
    /// (tokio-postgres's `CopyOutStream`).
    pub(crate) fn new(messages: S) -> Self {
        Self {
            messages: Box::pin(messages),
            header_read: false,
            trailer_read: false,
            ended: false,
        }
    }

    /// The next row of `message`, or `None` at the trailer.
    fn row(&mut self, mut message: Bytes) -> Result<Option<Bytes>, Error> {
        if self.trailer_read {
            return Err(malformed("data follows the trailer"));
        }
        if !self.header_read {
            skip_header(&mut message)?;
            self.header_read = true;
        }
        if message.starts_with(&TRAILER) {
            if message.len() != TRAILER.len() {
                return Err(malformed("data follows the trailer"));
            }
            self.trailer_read = true;
            return Ok(None);
        }
        Ok(Some(message))
    }
}

impl<S, E> Stream for CopyOutRows<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<Error>,
{
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while !this.ended {
            let row = match ready!(this.messages.as_mut().poll_next(cx)) {
                Some(Ok(message)) => this.row(message),
                Some(Err(error)) => Err(error.into()),
                None if this.trailer_read => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                None => Err(malformed("the data ended without its trailer")),
            };
            match row {
                Ok(Some(row)) => return Poll::Ready(Some(Ok(row))),
                // The COPY is read on to its end.
                Ok(None) => {}
                Err(error) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
        Poll::Ready(None)
    }
}

/// Reads the header off the front of the first message.
fn skip_header(message: &mut Bytes) -> Result<(), Error> {
    if !message.starts_with(SIGNATURE) {
        return Err(malformed("the header's signature is not PGCOPY's"));
    }
    message.advance(SIGNATURE.len());
    if message.len() < 8 {
        return Err(malformed("the header is cut short"));
    }
    let flags = message.get_u32();
    if flags & CRITICAL_FLAGS != 0 {
        return Err(malformed(format!(
            "the header's flags {flags:#x} ask for a format aepg does not read"
        )));
    }
    let extension = usize::try_from(message.get_u32()).unwrap_or(usize::MAX);
    if message.len() < extension {
        return Err(malformed("the header's extension is cut short"));
    }
    message.advance(extension);
    Ok(())
}

/// `error`, a value's, said of the column it was read for.
pub(crate) fn of_column(error: Error, column: &str) -> Error {
    match error {
        Error::CopyData { reason } => malformed(format!("column {column}: {reason}")),
        other => other,
    }
}

/// A row's values in turn: where each is in the row, `None` for NULL.
pub(crate) struct Fields<'row> {
    row: &'row [u8],
    at: usize,
    left: usize,
}

impl<'row> Fields<'row> {
    /// The fields of `row` (from its field count on), which must hold
    /// `columns` values.
    ///
    /// # Errors
    /// [`Error::CopyData`] when the row holds another number.
    pub(crate) fn of(row: &'row [u8], columns: usize) -> Result<Self, Error> {
        let count = row
            .get(..2)
            .map(|count| i16::from_be_bytes([count[0], count[1]]))
            .ok_or_else(|| malformed("a row is cut short before its field count"))?;
        if usize::try_from(count).ok() != Some(columns) {
            return Err(malformed(format!(
                "a row has {count} values for {columns} columns"
            )));
        }
        Ok(Self {
            row,
            at: 2,
            left: columns,
        })
    }

    /// Where the next value is in the row: `None` for NULL.
    ///
    /// # Errors
    /// [`Error::CopyData`] when its length is cut short, negative (other
    /// than NULL's −1) or reaches past the row, or when every value was
    /// read.
    pub(crate) fn next_value(&mut self) -> Result<Option<Range<usize>>, Error> {
        if self.left == 0 {
            return Err(malformed("a row was read past its last value"));
        }
        self.left -= 1;
        let length = self
            .row
            .get(self.at..self.at + 4)
            .map(|length| i32::from_be_bytes([length[0], length[1], length[2], length[3]]))
            .ok_or_else(|| malformed("a row is cut short before a value's length"))?;
        self.at += 4;
        if length == -1 {
            return Ok(None);
        }
        let end = usize::try_from(length)
            .ok()
            .and_then(|length| self.at.checked_add(length))
            .filter(|&end| end <= self.row.len())
            .ok_or_else(|| malformed(format!("a value's length {length} does not fit its row")))?;
        let value = self.at..end;
        self.at = end;
        Ok(Some(value))
    }

    /// Checks that every value was read and nothing follows the last.
    ///
    /// # Errors
    /// [`Error::CopyData`] otherwise.
    pub(crate) fn end(self) -> Result<(), Error> {
        if self.left != 0 {
            return Err(malformed("a row was left with values unread"));
        }
        if self.at != self.row.len() {
            return Err(malformed("a row holds bytes after its last value"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of `values` in the binary format.
    fn row(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut row = i16::try_from(values.len())
            .expect("few values")
            .to_be_bytes()
            .to_vec();
        for value in values {
            match value {
                None => row.extend_from_slice(&(-1_i32).to_be_bytes()),
                Some(bytes) => {
                    row.extend_from_slice(
                        &i32::try_from(bytes.len()).expect("short").to_be_bytes(),
                    );
                    row.extend_from_slice(bytes);
                }
            }
        }
        row
    }

    fn values(row: &[u8], columns: usize) -> Result<Vec<Option<&[u8]>>, Error> {
        let mut fields = Fields::of(row, columns)?;
        let values = (0..columns)
            .map(|_| Ok(fields.next_value()?.map(|range| &row[range])))
            .collect::<Result<_, Error>>()?;
        fields.end()?;
        Ok(values)
    }

    fn header(flags: u32, extension: &[u8]) -> Vec<u8> {
        let mut header = SIGNATURE.to_vec();
        header.extend_from_slice(&flags.to_be_bytes());
        header.extend_from_slice(&u32::try_from(extension.len()).expect("short").to_be_bytes());
        header.extend_from_slice(extension);
        header
    }

    #[test]
    fn values_are_located_nulls_and_empty_values_included() {
        let written: [Option<&[u8]>; 4] = [Some(b"abc"), None, Some(b""), Some(&[0, 1, 2, 255])];
        assert_eq!(values(&row(&written), 4).expect("well formed"), written);
        assert_eq!(
            values(&row(&[]), 0).expect("no columns"),
            Vec::<Option<&[u8]>>::new()
        );
    }

    #[test]
    fn a_row_of_another_width_is_refused() {
        let written = row(&[Some(b"a"), Some(b"b")]);
        for columns in [0, 1, 3] {
            let error = values(&written, columns).expect_err("wrong width");
            assert!(matches!(error, Error::CopyData { .. }), "{error}");
        }
        assert!(values(&(-1_i16).to_be_bytes(), 0).is_err());
    }

    #[test]
    fn every_cut_and_every_lying_length_is_refused() {
        let written = row(&[Some(b"abcd"), None, Some(b"xy")]);
        for cut in 0..written.len() {
            let error = values(&written[..cut], 3).expect_err("cut short");
            assert!(
                matches!(error, Error::CopyData { .. }),
                "cut at {cut}: {error}"
            );
        }
        let mut trailing = written.clone();
        trailing.push(0);
        assert!(values(&trailing, 3).is_err());
        // The first length, made each of these.
        for length in [-2_i32, i32::MIN, 5, 100, i32::MAX] {
            let mut lying = written.clone();
            lying[2..6].copy_from_slice(&length.to_be_bytes());
            let error = values(&lying, 3).expect_err("lying length");
            assert!(matches!(error, Error::CopyData { .. }), "{length}: {error}");
        }
    }

    #[test]
    fn a_values_error_names_its_column() {
        let error = of_column(
            malformed("a value's length 9 does not fit its row"),
            "public.t.c",
        );
        assert_eq!(
            error.to_string(),
            "the server's COPY data is malformed: column public.t.c: a value's length 9 does not fit its row"
        );
        let other = of_column(
            Error::CopyRowLength {
                expected: 1,
                given: 2,
            },
            "public.t.c",
        );
        assert!(matches!(other, Error::CopyRowLength { .. }));
    }

    #[test]
    fn a_row_cannot_be_read_past_its_last_value() {
        let written = row(&[Some(b"a")]);
        let mut fields = Fields::of(&written, 1).expect("one value");
        fields.next_value().expect("the value");
        assert!(fields.next_value().is_err());
    }

    #[test]
    fn the_header_is_checked_and_skipped() {
        let first_row = row(&[Some(b"v")]);
        for extension in [&b""[..], b"0123456789"] {
            let mut message = Bytes::from([header(0, extension), first_row.clone()].concat());
            skip_header(&mut message).expect("well formed");
            assert_eq!(&message[..], &first_row[..]);
        }
        // Bits 17–31 are ignored, as the format says.
        let mut message = Bytes::from(header(0x8002_0000, b""));
        skip_header(&mut message).expect("compatible flags");
        for flags in [1, 0x8000, 1 << 16] {
            let mut message = Bytes::from(header(flags, b""));
            assert!(skip_header(&mut message).is_err(), "flags {flags:#x}");
        }
        let whole = header(0, b"ext");
        for cut in 0..whole.len() {
            let mut message = Bytes::copy_from_slice(&whole[..cut]);
            assert!(skip_header(&mut message).is_err(), "cut at {cut}");
        }
        let mut wrong = whole.clone();
        wrong[0] = b'X';
        assert!(skip_header(&mut Bytes::from(wrong)).is_err());
    }

    /// The rows `messages` make, or the error that ended them.
    fn rows_of(messages: Vec<Result<Vec<u8>, Error>>) -> Vec<Result<Vec<u8>, String>> {
        use futures_util::StreamExt;
        let messages = futures_util::stream::iter(
            messages.into_iter().map(|message| message.map(Bytes::from)),
        );
        let rows = CopyOutRows::new(messages)
            .map(|row| {
                row.map(|row| row.to_vec())
                    .map_err(|error| error.to_string())
            })
            .collect::<Vec<_>>();
        futures_util::FutureExt::now_or_never(rows).expect("ready")
    }

    #[test]
    fn rows_come_one_a_message_until_the_trailer() {
        let first = row(&[Some(b"1")]);
        let second = row(&[None]);
        let messages = vec![
            Ok([header(0, b""), first.clone()].concat()),
            Ok(second.clone()),
            Ok(TRAILER.to_vec()),
        ];
        assert_eq!(rows_of(messages), vec![Ok(first), Ok(second)]);
        // No rows: the header and the trailer in one message.
        assert_eq!(
            rows_of(vec![Ok([header(0, b""), TRAILER.to_vec()].concat())]),
            vec![]
        );
    }

    #[test]
    fn what_breaks_the_stream_ends_it_with_one_error() {
        let first = row(&[Some(b"1")]);
        let cases = [
            // No trailer.
            vec![Ok([header(0, b""), first.clone()].concat())],
            // Data after the trailer, in its message or the next.
            vec![Ok([header(0, b""), TRAILER.to_vec(), vec![0]].concat())],
            vec![
                Ok([header(0, b""), TRAILER.to_vec()].concat()),
                Ok(first.clone()),
            ],
            // A header with OIDs.
            vec![
                Ok([header(1 << 16, b""), first.clone()].concat()),
                Ok(first.clone()),
            ],
            // The connection's error.
            vec![
                Ok([header(0, b""), first.clone()].concat()),
                Err(malformed("stand-in for the connection's error")),
                Ok(first.clone()),
            ],
        ];
        for messages in cases {
            let rows = rows_of(messages);
            let (last, before) = rows.split_last().expect("an item");
            assert!(last.is_err(), "{rows:?}");
            assert!(before.iter().all(Result::is_ok), "{rows:?}");
        }
    }
}
