//! Streaming secret masking: every occurrence of a secret value in a job's output becomes
//! `***`, however the output is split into reads.
//!
//! Matching is on bytes, before any UTF-8 decoding, so a value split inside a multibyte
//! character is still found. At each position the longest value that matches wins (so of
//! `hunter2hunter2` and `hunter2`, the whole longer value is hidden). Output that could still
//! be the beginning of a value (at most the longest value's length minus one byte) is held back
//! until more output arrives or the stream ends.

use std::sync::Arc;

/// What a secret value is replaced with.
pub(crate) const MASK: &[u8] = b"***";

/// Replaces secret values in a byte stream.
#[derive(Clone)]
pub(crate) struct Masker {
    /// The values, longest first, none empty.
    values: Arc<[Box<[u8]>]>,
    /// `starts[b]`: some value begins with byte `b`.
    starts: [bool; 256],
    /// Output not released yet: it may be the beginning of a value.
    held: Vec<u8>,
}

impl Masker {
    /// A masker for `values` (empty ones are ignored).
    pub(crate) fn new<I: IntoIterator<Item = Box<[u8]>>>(values: I) -> Self {
        let mut values: Vec<_> = values.into_iter().filter(|v| !v.is_empty()).collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        let mut starts = [false; 256];
        for value in &values {
            starts[usize::from(value[0])] = true;
        }
        Self {
            values: values.into(),
            starts,
            held: Vec::new(),
        }
    }

    /// Takes `data` in and appends to `out` everything that can no longer be part of a value.
    pub(crate) fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.held.extend_from_slice(data);
        self.release(out, false);
    }

    /// Ends the stream: appends everything still held to `out`, masked.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        self.release(out, true);
    }

    /// Masks `text` as a whole (for error messages): no state is kept.
    pub(crate) fn mask_str(&self, text: &str) -> String {
        let mut masker = self.clone();
        masker.held.clear();
        let mut out = Vec::with_capacity(text.len());
        masker.push(text.as_bytes(), &mut out);
        masker.finish(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn release(&mut self, out: &mut Vec<u8>, end: bool) {
        let held = &self.held;
        let mut at = 0;
        while at < held.len() {
            if !self.starts[usize::from(held[at])] {
                out.push(held[at]);
                at += 1;
                continue;
            }
            let rest = &held[at..];
            // A longer value could still match once more output arrives: wait for it.
            if !end
                && self
                    .values
                    .iter()
                    .any(|v| v.len() > rest.len() && v.starts_with(rest))
            {
                break;
            }
            match self.values.iter().find(|v| rest.starts_with(v)) {
                Some(value) => {
                    out.extend_from_slice(MASK);
                    at += value.len();
                }
                None => {
                    out.push(held[at]);
                    at += 1;
                }
            }
        }
        self.held.drain(..at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(values: &[&str]) -> Masker {
        Masker::new(values.iter().map(|v| v.as_bytes().into()))
    }

    /// Feeds `pieces` one by one and returns the whole masked output.
    fn run(masker: &mut Masker, pieces: &[&[u8]]) -> String {
        let mut out = Vec::new();
        for piece in pieces {
            masker.push(piece, &mut out);
        }
        masker.finish(&mut out);
        String::from_utf8(out).expect("masking keeps UTF-8 intact")
    }

    #[test]
    fn a_value_in_one_piece() {
        let mut m = masker(&["s3cr3t-token"]);
        assert_eq!(
            run(&mut m, &[b"login s3cr3t-token ok, s3cr3t-token again\n"]),
            "login *** ok, *** again\n"
        );
    }

    #[test]
    fn a_value_split_across_pieces_is_held_back_until_decided() {
        let mut m = masker(&["s3cr3t-token"]);
        let mut out = Vec::new();
        m.push(b"login s3cr3", &mut out);
        assert_eq!(out, b"login ", "the possible start of the value is held");
        m.push(b"t-tok", &mut out);
        assert_eq!(out, b"login ");
        m.push(b"en!", &mut out);
        assert_eq!(out, b"login ***!");
        m.push(b" s3cr", &mut out);
        m.push(b"apped", &mut out);
        assert_eq!(
            out, b"login ***! s3crapped",
            "a prefix that did not match is released"
        );
    }

    #[test]
    fn a_multi_line_value() {
        let mut m = masker(&["-----BEGIN KEY-----\nabcd\n-----END KEY-----"]);
        let text = "key:\n-----BEGIN KEY-----\nabcd\n-----END KEY-----\ndone\n";
        assert_eq!(run(&mut m, &[text.as_bytes()]), "key:\n***\ndone\n");
        let mut m = masker(&["-----BEGIN KEY-----\nabcd\n-----END KEY-----"]);
        let lines: Vec<&[u8]> = text.split_inclusive('\n').map(str::as_bytes).collect();
        assert_eq!(run(&mut m, &lines), "key:\n***\ndone\n");
    }

    #[test]
    fn overlapping_values_longest_first() {
        let mut m = masker(&["pass", "password123", "word1234"]);
        assert_eq!(
            run(&mut m, &[b"a password123 b pass c word1234 d password12"]),
            "a *** b *** c *** d ***word12"
        );
        // The longer value is waited for even when the shorter one is already complete.
        let mut m = masker(&["pass", "password123"]);
        assert_eq!(run(&mut m, &[b"password", b"123"]), "***");
    }

    #[test]
    fn multibyte_characters_near_the_boundary() {
        let value = "pässwörd€";
        let text = format!("é{value}ü and {value}");
        for split in 0..=text.len() {
            let mut m = masker(&[value]);
            let (a, b) = text.as_bytes().split_at(split);
            assert_eq!(
                run(&mut m, &[a, b]),
                "é***ü and ***",
                "split at byte {split}"
            );
        }
    }

    #[test]
    fn every_split_of_every_piece_size_masks_the_same() {
        let values = ["hunter2hunter2", "hunter2", "tok\nen", "äöü-secret"];
        let text =
            "x hunter2hunter2 y hunter2 z tok\nen äöü-secret hunter äöü hunter2hunt".as_bytes();
        let expected = run(&mut masker(&values), &[text]);
        assert_eq!(expected, "x *** y *** z *** *** hunter äöü ***hunt");
        for size in 1..=text.len() {
            let pieces: Vec<&[u8]> = text.chunks(size).collect();
            assert_eq!(
                run(&mut masker(&values), &pieces),
                expected,
                "pieces of {size}"
            );
        }
        for split in 0..=text.len() {
            let (a, b) = text.split_at(split);
            assert_eq!(
                run(&mut masker(&values), &[a, b]),
                expected,
                "split at {split}"
            );
        }
    }

    #[test]
    fn no_values_passes_everything_through_at_once() {
        let mut m = masker(&[]);
        let mut out = Vec::new();
        m.push(b"plain", &mut out);
        assert_eq!(out, b"plain");
        assert_eq!(masker(&["abcd"]).mask_str("x abcd y"), "x *** y");
    }
}
