//! Cell cryptography: the pure core that turns a plaintext value into a cell
//! and back. No I/O happens here.
//!
//! The byte layout is documented, with known-answer vectors, in `docs/FORMAT.md`.

mod cipher;
mod coercion;
mod encoding_check;
mod error;
mod gcm_siv;
mod header;
mod named_type;
mod padding;
mod plaintext_type;
mod setting;

pub(crate) use cipher::append_zeroizing;
#[cfg(test)]
pub(crate) use cipher::derive_subkey_for_tests;
pub use cipher::CellCipher;
pub use coercion::CoercionProblem;
pub(crate) use coercion::{coerce, Coercion};
pub use encoding_check::{check_encoding, EncodingProblem};
pub use error::CellError;
pub use header::{CellHeader, CELL_FORMAT_VERSION, CELL_OVERHEAD, HEADER_LEN};
pub use named_type::{NamedType, NamedTypeError};
pub use plaintext_type::{PlaintextType, UnsupportedType};
pub use setting::{CellSetting, EncryptionMode, PaddingPolicy};

#[cfg(test)]
mod tests;
