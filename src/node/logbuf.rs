//! A task's log on its way to the server: a chunk for the next heartbeat and a short tail for the
//! result. Both are bounded, so a chatty program (or a long outage, when chunks cannot be sent)
//! costs a fixed amount of memory.

use std::collections::VecDeque;

/// Send the chunk early once it holds this much.
pub const FLUSH_BYTES: usize = 8 * 1024;
/// Most a heartbeat may carry (the API's limit); older text is dropped past this.
const MAX_CHUNK: usize = 64 * 1024 - 128;
const TAIL_LINES: usize = 30;

/// Chunk + tail of one task's output.
#[derive(Debug, Default)]
pub struct LogBuffer {
    chunk: String,
    dropped: usize,
    tail: VecDeque<String>,
    first_error: Option<String>,
}

/// A line in which the program names an error: `Error: ...` (Blender), `ERROR ...`, or a Python
/// exception's last line (`AttributeError: ...`). Scanned so a failure's one-line summary says
/// the cause instead of the progress lines that happened to come last.
fn is_error_line(line: &str) -> bool {
    let line = line.trim_start();
    let word = line
        .split(|c: char| c == ':' || c.is_whitespace())
        .next()
        .unwrap_or("");
    word.eq_ignore_ascii_case("error")
        || (word.len() > 5
            && word.ends_with("Error")
            && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

impl LogBuffer {
    /// Adds one output line.
    pub fn push(&mut self, line: &str) {
        if self.chunk.len() + line.len() + 1 > MAX_CHUNK {
            // Drop the oldest half: the newest lines say most about what is happening now.
            let mut cut = self.chunk.len() / 2;
            while !self.chunk.is_char_boundary(cut) {
                cut += 1;
            }
            self.dropped += cut;
            self.chunk.drain(..cut);
        }
        if line.len() < MAX_CHUNK {
            self.chunk.push_str(line);
            self.chunk.push('\n');
        }
        if self.first_error.is_none() && is_error_line(line) {
            self.first_error = Some(line.trim().chars().take(300).collect());
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.chars().take(400).collect());
    }

    /// True when the chunk is big enough to send before the next heartbeat is due.
    pub fn should_flush(&self) -> bool {
        self.chunk.len() >= FLUSH_BYTES
    }

    /// True when there is text not sent yet.
    pub fn has_text(&self) -> bool {
        !self.chunk.is_empty()
    }

    /// The text to send now (noting what was dropped); put it back with [`Self::unsend`] if the
    /// heartbeat fails.
    pub fn take_chunk(&mut self) -> String {
        let mut text = std::mem::take(&mut self.chunk);
        if self.dropped > 0 {
            text.insert_str(
                0,
                &format!("[edgefarm: {} bytes of log dropped]\n", self.dropped),
            );
            self.dropped = 0;
        }
        text
    }

    /// Puts back a chunk whose heartbeat failed, ahead of newer text.
    pub fn unsend(&mut self, mut text: String) {
        text.push_str(&self.chunk);
        self.chunk = text;
        if self.chunk.len() > MAX_CHUNK {
            let mut cut = self.chunk.len() - MAX_CHUNK;
            while !self.chunk.is_char_boundary(cut) {
                cut += 1;
            }
            self.dropped += cut;
            self.chunk.drain(..cut);
        }
    }

    /// The first line in which the program named an error, if any.
    pub fn first_error(&self) -> Option<&str> {
        self.first_error.as_deref()
    }

    /// The last lines, for the result and the failure message.
    pub fn tail(&self, lines: usize) -> String {
        let skip = self.tail.len().saturating_sub(lines);
        self.tail
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_stays_bounded_and_notes_the_drop() {
        let mut log = LogBuffer::default();
        let line = "x".repeat(1000);
        for _ in 0..200 {
            log.push(&line);
        }
        let chunk = log.take_chunk();
        assert!(chunk.len() <= 64 * 1024, "{}", chunk.len());
        assert!(
            chunk.starts_with("[edgefarm:"),
            "the drop must be visible in the log"
        );
        assert!(!log.has_text());
    }

    #[test]
    fn first_error_line_is_kept_for_the_summary() {
        let mut log = LogBuffer::default();
        log.push("Fra:1 Mem:9.50M | Updating Film");
        assert_eq!(log.first_error(), None);
        log.push("Error: Build without OpenImageDenoiser");
        log.push("Traceback (most recent call last):");
        log.push("AttributeError: 'NoneType' object has no attribute 'x'");
        for i in 0..100 {
            log.push(&format!("Fra:{i} progress"));
        }
        assert_eq!(
            log.first_error(),
            Some("Error: Build without OpenImageDenoiser")
        );
        assert!(is_error_line("  AttributeError: x"));
        assert!(is_error_line("ERROR something broke"));
        assert!(!is_error_line("Fra:1 Mem:1M | Error free"));
        assert!(!is_error_line("terror: not an error word"));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut log = LogBuffer::default();
        for i in 0..50 {
            log.push(&format!("line {i}"));
        }
        assert_eq!(log.tail(2), "line 48\nline 49");
    }

    #[test]
    fn unsent_chunk_goes_back_before_newer_text() {
        let mut log = LogBuffer::default();
        log.push("a");
        let chunk = log.take_chunk();
        log.push("b");
        log.unsend(chunk);
        assert_eq!(log.take_chunk(), "a\nb\n");
    }
}
