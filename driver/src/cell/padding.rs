//! ISO/IEC 7816-4 padding: one `0x80` byte, then zeros up to the target length.

use super::setting::PaddingPolicy;

/// Marks where the plaintext ends.
const PAD_MARKER: u8 = 0x80;
/// Length unit of `block16` and smallest size of `bucket`.
const BLOCK: usize = 16;

/// Length of `len` plaintext bytes once padded under `policy`, or `None` if
/// that would overflow.
pub(crate) fn padded_len(policy: PaddingPolicy, len: usize) -> Option<usize> {
    match policy {
        PaddingPolicy::None => Some(len),
        PaddingPolicy::Block16 => len.checked_add(1)?.checked_next_multiple_of(BLOCK),
        PaddingPolicy::Bucket => Some(len.checked_add(1)?.checked_next_power_of_two()?.max(BLOCK)),
    }
}

/// Appends the padding of `policy` to `buffer`, whose bytes from `start` are
/// the plaintext. The caller has checked [`padded_len`].
pub(crate) fn pad(policy: PaddingPolicy, buffer: &mut Vec<u8>, start: usize, target_len: usize) {
    if policy == PaddingPolicy::None {
        return;
    }
    buffer.push(PAD_MARKER);
    buffer.resize(start + target_len, 0);
}

/// The length of the plaintext inside `padded`, or `None` if the padding is
/// not what `policy` writes.
pub(crate) fn unpadded_len(policy: PaddingPolicy, padded: &[u8]) -> Option<usize> {
    if policy == PaddingPolicy::None {
        return Some(padded.len());
    }
    let marker = padded.iter().rposition(|&byte| byte != 0)?;
    if padded[marker] != PAD_MARKER || padded_len(policy, marker)? != padded.len() {
        return None;
    }
    Some(marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block16_lengths() {
        assert_eq!(padded_len(PaddingPolicy::Block16, 0), Some(16));
        assert_eq!(padded_len(PaddingPolicy::Block16, 15), Some(16));
        assert_eq!(padded_len(PaddingPolicy::Block16, 16), Some(32));
        assert_eq!(padded_len(PaddingPolicy::Block16, usize::MAX), None);
    }

    #[test]
    fn bucket_lengths() {
        assert_eq!(padded_len(PaddingPolicy::Bucket, 0), Some(16));
        assert_eq!(padded_len(PaddingPolicy::Bucket, 15), Some(16));
        assert_eq!(padded_len(PaddingPolicy::Bucket, 16), Some(32));
        assert_eq!(padded_len(PaddingPolicy::Bucket, 31), Some(32));
        assert_eq!(padded_len(PaddingPolicy::Bucket, 32), Some(64));
        assert_eq!(padded_len(PaddingPolicy::Bucket, 1000), Some(1024));
    }

    #[test]
    fn padding_is_removed_exactly_and_checked() {
        for policy in [PaddingPolicy::Block16, PaddingPolicy::Bucket] {
            for len in 0..70 {
                let plaintext: Vec<u8> = (0..len)
                    .map(|i| if i % 3 == 0 { 0 } else { 0x80 })
                    .collect();
                let mut buffer = plaintext.clone();
                let target = padded_len(policy, len).unwrap();
                pad(policy, &mut buffer, 0, target);
                assert_eq!(buffer.len(), target);
                assert_eq!(unpadded_len(policy, &buffer), Some(len), "{policy} {len}");
            }
            assert_eq!(unpadded_len(policy, &[0u8; 16]), None, "no marker");
            assert_eq!(unpadded_len(policy, &[0x81; 16]), None, "wrong marker");
            let mut short = vec![1, 2, PAD_MARKER];
            short.resize(32, 0);
            assert_eq!(unpadded_len(policy, &short), None, "too much padding");
        }
    }
}
