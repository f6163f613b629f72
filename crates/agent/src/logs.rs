//! A job's output on its way to the stream: masked, decoded as (lossy) UTF-8 and cut into
//! `LogChunk`s of at most 64 KiB, numbered from 0 per attempt.
//!
//! Output is line-buffered: a chunk ends at a line break where it can. Whatever output has
//! waited for [`FLUSH_EVERY`] is flushed by the executor calling [`LogSink::flush`] at
//! [`LogSink::deadline`]: complete lines first, a partial line one period later.

use std::time::Duration;

use switchyard_proto::v1::{JobProgress, LogChunk};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::jobs::{JobEvent, JobKey};
use crate::mask::Masker;

/// The largest chunk, in bytes of UTF-8 (the protocol's limit).
pub(crate) const MAX_CHUNK: usize = 64 * 1024;
/// The longest output waits before it is shipped.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Turns one attempt's raw output into numbered log chunks sent as [`JobEvent::Log`].
pub(crate) struct LogSink {
    key: JobKey,
    events: mpsc::Sender<JobEvent>,
    masker: Masker,
    /// Masked bytes that end inside a UTF-8 sequence, waiting for the rest of it.
    undecoded: Vec<u8>,
    /// Masked, decoded text not shipped yet.
    text: String,
    /// When the oldest unshipped text arrived.
    since: Option<Instant>,
    /// The sequence number of the next chunk.
    seq: u64,
}

impl LogSink {
    /// A sink for attempt `key`, masking with `masker`, shipping on `events`.
    pub(crate) fn new(key: JobKey, masker: Masker, events: mpsc::Sender<JobEvent>) -> Self {
        Self {
            key,
            events,
            masker,
            undecoded: Vec::new(),
            text: String::new(),
            since: None,
            seq: 0,
        }
    }

    /// Reports that the attempt is `percent` (0-100) done, through the same channel as its
    /// output (so it reaches the server in order with it).
    pub(crate) async fn progress(&self, percent: u8) {
        let report = JobProgress {
            job_id: self.key.job_id.clone(),
            attempt: self.key.attempt,
            percent: percent.min(100).into(),
        };
        let _ = self.events.send(JobEvent::Progress(report)).await;
    }

    /// Takes raw output in; ships full chunks at once.
    pub(crate) async fn write(&mut self, data: &[u8]) {
        self.masker.push(data, &mut self.undecoded);
        self.decode(false);
        while self.text.len() >= MAX_CHUNK {
            let limit = self.text.floor_char_boundary(MAX_CHUNK);
            let cut = self.text[..limit]
                .rfind('\n')
                .map_or(limit, |newline| newline + 1);
            self.ship(cut).await;
        }
        if !self.text.is_empty() && self.since.is_none() {
            self.since = Some(Instant::now());
        }
    }

    /// When [`flush`](Self::flush) is due: [`FLUSH_EVERY`] after the oldest unshipped output.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.since.map(|since| since + FLUSH_EVERY)
    }

    /// Ships the complete lines waiting, or, when there are none, the partial line.
    pub(crate) async fn flush(&mut self) {
        let cut = match self.text.rfind('\n') {
            Some(newline) => newline + 1,
            None => self.text.len(),
        };
        self.ship(cut).await;
        self.since = (!self.text.is_empty()).then(Instant::now);
    }

    /// Ends the output: ships everything, including what masking or decoding held back.
    pub(crate) async fn finish(mut self) {
        self.masker.finish(&mut self.undecoded);
        self.decode(true);
        while !self.text.is_empty() {
            let cut = self.text.floor_char_boundary(MAX_CHUNK);
            self.ship(cut).await;
        }
    }

    /// Moves the decodable part of `undecoded` to `text`, invalid bytes as U+FFFD. An
    /// incomplete sequence at the end stays for the next write, unless this is the `end`.
    fn decode(&mut self, end: bool) {
        let mut rest = self.undecoded.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    self.text.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    self.text.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        Some(invalid) => rest = &after[invalid..],
                        None if !end => {
                            rest = after;
                            break;
                        }
                        None => rest = &[],
                    }
                    self.text.push(char::REPLACEMENT_CHARACTER);
                }
            }
        }
        let kept = rest.len();
        self.undecoded.drain(..self.undecoded.len() - kept);
    }

    /// Sends the first `len` bytes of `text` (a char boundary, at most [`MAX_CHUNK`]) as the
    /// next chunk. A job whose agent loop is gone has no one to ship to: the chunk is dropped.
    async fn ship(&mut self, len: usize) {
        if len == 0 {
            return;
        }
        let rest = self.text.split_off(len);
        let data = std::mem::replace(&mut self.text, rest);
        let chunk = LogChunk {
            job_id: self.key.job_id.clone(),
            attempt: self.key.attempt,
            seq: self.seq,
            data,
        };
        self.seq += 1;
        let _ = self.events.send(JobEvent::Log(chunk)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(values: &[&str]) -> (LogSink, mpsc::Receiver<JobEvent>) {
        let (tx, rx) = mpsc::channel(1024);
        let key = JobKey::new("job-1", 3);
        let masker = Masker::new(values.iter().map(|v| v.as_bytes().into()));
        (LogSink::new(key, masker, tx), rx)
    }

    fn chunks(rx: &mut mpsc::Receiver<JobEvent>) -> Vec<LogChunk> {
        let mut out = Vec::new();
        while let Ok(event) = rx.try_recv() {
            match event {
                JobEvent::Log(chunk) => out.push(chunk),
                JobEvent::Ended { .. } | JobEvent::Progress(_) => {
                    panic!("a sink sends logs only")
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn chunks_are_numbered_bounded_and_cut_at_lines() {
        let (mut sink, mut rx) = sink(&[]);
        let line = format!("{}\n", "x".repeat(999));
        for _ in 0..100 {
            sink.write(line.as_bytes()).await;
        }
        sink.write(b"partial").await;
        sink.finish().await;
        let got = chunks(&mut rx);
        assert!(got.len() >= 2);
        for (i, chunk) in got.iter().enumerate() {
            assert_eq!(chunk.seq, i as u64);
            assert_eq!((chunk.job_id.as_str(), chunk.attempt), ("job-1", 3));
            assert!(chunk.data.len() <= MAX_CHUNK);
        }
        assert!(got[0].data.ends_with('\n') && got[0].data.len() == 65 * 1000);
        let all: String = got.iter().map(|c| c.data.as_str()).collect();
        assert_eq!(all, format!("{}partial", line.repeat(100)));
    }

    #[tokio::test]
    async fn long_lines_and_invalid_bytes_still_fit_a_chunk() {
        let (mut sink, mut rx) = sink(&[]);
        sink.write(&[0xff; 3 * MAX_CHUNK]).await;
        sink.write("é".repeat(MAX_CHUNK).as_bytes()).await;
        sink.finish().await;
        let got = chunks(&mut rx);
        assert!(got.iter().all(|c| c.data.len() <= MAX_CHUNK));
        let all: String = got.iter().map(|c| c.data.as_str()).collect();
        assert_eq!(
            all,
            format!(
                "{}{}",
                "\u{FFFD}".repeat(3 * MAX_CHUNK),
                "é".repeat(MAX_CHUNK)
            )
        );
    }

    #[tokio::test]
    async fn a_character_split_across_writes_is_decoded_whole() {
        let (mut sink, mut rx) = sink(&[]);
        let text = "größe €\n".as_bytes();
        for byte in text {
            sink.write(std::slice::from_ref(byte)).await;
            sink.flush().await;
        }
        sink.write(&[0xe2, 0x82]).await;
        sink.finish().await;
        let all: String = chunks(&mut rx).iter().map(|c| c.data.as_str()).collect();
        assert_eq!(
            all, "größe €\n\u{FFFD}",
            "a truncated sequence at the end is replaced"
        );
    }

    #[tokio::test]
    async fn flush_ships_complete_lines_then_the_partial_line() {
        let (mut sink, mut rx) = sink(&["hunter2hunter2"]);
        assert_eq!(sink.deadline(), None);
        sink.write(b"one\ntwo\nthr").await;
        let deadline = sink.deadline().expect("output is waiting");
        assert!(deadline <= Instant::now() + FLUSH_EVERY);
        sink.flush().await;
        assert_eq!(chunks(&mut rx)[0].data, "one\ntwo\n");
        assert!(
            sink.deadline().is_some(),
            "the partial line waits one more period"
        );
        sink.flush().await;
        assert_eq!(chunks(&mut rx)[0].data, "thr");
        assert_eq!(sink.deadline(), None);
        sink.write(b"pw hunter2hun").await;
        sink.flush().await;
        assert_eq!(
            chunks(&mut rx)[0].data,
            "pw ",
            "a possible secret is not flushed"
        );
        sink.write(b"ter2\n").await;
        sink.finish().await;
        assert_eq!(chunks(&mut rx)[0].data, "***\n");
    }
}
