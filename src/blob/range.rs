//! One HTTP byte range (`Range: bytes=a-b`, `bytes=a-`, `bytes=-n`), so downloads can resume.
//! Several ranges in one header are answered with the whole blob, which RFC 9110 allows.

/// A parsed `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No usable range: send everything (200).
    Whole,
    /// Send bytes `start..=end` (206).
    Part {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// Outside the blob (416).
    Unsatisfiable,
}

impl ByteRange {
    /// The range `header` asks of a blob of `size` bytes.
    pub fn parse(header: Option<&str>, size: u64) -> ByteRange {
        let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
            return ByteRange::Whole;
        };
        if spec.contains(',') {
            return ByteRange::Whole;
        }
        let Some((a, b)) = spec.trim().split_once('-') else {
            return ByteRange::Whole;
        };
        let (a, b) = (a.trim(), b.trim());
        let (start, end) = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
            (Some(s), Some(e)) if s <= e => (s, e.min(size.saturating_sub(1))),
            (Some(s), None) if b.is_empty() => (s, size.saturating_sub(1)),
            (None, Some(n)) if a.is_empty() && n > 0 => {
                (size.saturating_sub(n), size.saturating_sub(1))
            }
            _ => return ByteRange::Whole,
        };
        if size == 0 || start >= size {
            return ByteRange::Unsatisfiable;
        }
        ByteRange::Part { start, end }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteRange::{self, *};

    #[test]
    fn ranges_resume_and_clamp() {
        assert_eq!(ByteRange::parse(None, 10), Whole);
        assert_eq!(
            ByteRange::parse(Some("bytes=4-"), 10),
            Part { start: 4, end: 9 }
        );
        assert_eq!(
            ByteRange::parse(Some("bytes=2-5"), 10),
            Part { start: 2, end: 5 }
        );
        assert_eq!(
            ByteRange::parse(Some("bytes=2-50"), 10),
            Part { start: 2, end: 9 }
        );
        assert_eq!(
            ByteRange::parse(Some("bytes=-3"), 10),
            Part { start: 7, end: 9 }
        );
        assert_eq!(ByteRange::parse(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(ByteRange::parse(Some("bytes=0-1,4-5"), 10), Whole);
        assert_eq!(ByteRange::parse(Some("items=1-2"), 10), Whole);
    }
}
