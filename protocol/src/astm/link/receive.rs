//! The receiving side of the link: bytes in an established session
//! become frames, frames become records, and a message complete at its `L`
//! waits for the journal's commit before the last frame is acknowledged
//! (see the link's notes). Raw mode's line-by-line receiver is here too.

use std::time::Instant;

use super::*;

impl Link {
    pub(super) fn on_rx_byte(&mut self, now: Instant, b: u8) {
        let cap = self.config.profile.max_message_bytes;
        let receive = self.config.timers.receive;
        let State::Receiving(rx) = &mut self.state else {
            return;
        };
        let collect = std::mem::replace(&mut rx.collect, Collect::Idle);
        match (collect, b) {
            // STX always opens a new frame: a frame cut short by noise is
            // dropped; its sender times out and repeats it.
            // A frame starting shows the sender is alive even if the frame
            // is lost later: the receive timer watches for a dead sender,
            // not for a noisy line.
            (_, STX) => {
                rx.collect = Collect::Body(Vec::new());
                rx.frame_too_long = false;
                if rx.pending.is_none() {
                    rx.deadline = now + receive;
                }
            }
            (_, EOT) => self.end_session(),
            // LIS01-A2 gives ENQ no meaning inside a session, and answering
            // it would be fatal: the sender, waiting for the answer to a
            // frame, would take our ACK for that frame. A sender that really
            // restarted gets no answer, and the receive timer frees the line.
            (Collect::Idle, _) => {}
            (Collect::Body(mut body), ETX | ETB) => {
                body.push(b);
                rx.collect = Collect::Trailer {
                    body,
                    trailer: Vec::new(),
                };
            }
            (Collect::Body(_), LF) => self.reject(now, FrameError::MissingEnd),
            (Collect::Body(mut body), _) => {
                if body.len() <= cap {
                    body.push(b);
                } else {
                    rx.frame_too_long = true;
                }
                rx.collect = Collect::Body(body);
            }
            (Collect::Trailer { body, mut trailer }, _) => {
                trailer.push(b);
                if b == LF {
                    self.on_frame(now, body, trailer);
                } else if trailer.len() >= 4 {
                    self.reject(now, FrameError::BadTrailer);
                } else {
                    rx.collect = Collect::Trailer { body, trailer };
                }
            }
        }
    }

    fn end_session(&mut self) {
        if let State::Receiving(rx) = &mut self.state {
            // A commit still pending goes on without us: the message will
            // be stored, the peer thinks it failed and will send it again,
            // and the content hash makes that a duplicate.
            if let Some(inc) = rx.take_incomplete(IncompleteReason::EndedWithoutTerminator) {
                self.event(Event::Incomplete(inc));
            }
        }
        self.state = State::Neutral;
        self.event(Event::SessionEnded);
    }

    fn reject(&mut self, now: Instant, err: FrameError) {
        let receive = self.config.timers.receive;
        if let State::Receiving(rx) = &mut self.state {
            if rx.pending.is_some() {
                // The answer to the pending frame comes from commit_done.
                return;
            }
            rx.deadline = now + receive;
        }
        self.write(vec![NAK]);
        self.event(Event::FrameRejected(err));
    }

    fn on_frame(&mut self, now: Instant, body: Vec<u8>, trailer: Vec<u8>) {
        let profile = &self.config.profile;
        let cap = profile.max_message_bytes;
        let receive = self.config.timers.receive;
        let decoded = frame::decode_frame(&body, &trailer, profile.checksum_required);
        let State::Receiving(rx) = &mut self.state else {
            return;
        };
        if rx.pending.is_some() {
            // Retransmission of the frame whose commit is under way (our
            // answer is late, not lost): absorb it.
            return;
        }
        if rx.frame_too_long {
            rx.too_large = true;
            return self.reject(now, FrameError::TooLong);
        }
        let fr = match decoded {
            Ok(fr) => fr,
            Err(err) => return self.reject(now, err),
        };
        if Some(fr.number) == rx.last_accepted {
            rx.deadline = now + receive;
            self.write(vec![ACK]);
            self.event(Event::DuplicateFrame { number: fr.number });
            return;
        }
        if fr.number != rx.expected {
            let expected = rx.expected;
            return self.reject(
                now,
                FrameError::WrongFrameNumber {
                    expected,
                    found: fr.number,
                },
            );
        }
        if rx.size + fr.text.len() > cap {
            rx.too_large = true;
            return self.reject(now, FrameError::TooLong);
        }
        rx.deadline = now + receive;
        rx.size += fr.text.len();
        if !fr.last {
            rx.record_buf.extend_from_slice(&fr.text);
            rx.last_accepted = Some(fr.number);
            rx.expected = frame::next_frame_number(fr.number);
            self.write(vec![ACK]);
            return;
        }
        let mut keep = rx.records.len();
        let saved_buf = rx.record_buf.clone();
        let mut text = std::mem::take(&mut rx.record_buf);
        text.extend_from_slice(&fr.text);
        let mut incompletes = Vec::new();
        // (the message up to L, records after L in the same frame)
        let mut complete: Option<(Records, Records)> = None;
        for piece in text.split(|&c| c == CR).filter(|p| !p.is_empty()) {
            if let Some((_, carry)) = complete.as_mut() {
                carry.push(piece.to_vec());
                continue;
            }
            if piece.first() == Some(&b'H') && !rx.records.is_empty() {
                incompletes.push(IncompleteMessage {
                    reason: IncompleteReason::NewHeaderBeforeTerminator,
                    records: std::mem::take(&mut rx.records),
                    partial: Vec::new(),
                });
                keep = 0;
            }
            rx.records.push(piece.to_vec());
            if piece.first() == Some(&b'L') {
                complete = Some((rx.records.clone(), Vec::new()));
            }
        }
        match complete {
            Some((message, carry)) => {
                rx.pending = Some(PendingCommit {
                    number: fr.number,
                    keep,
                    record_buf: saved_buf,
                    carry,
                });
                for inc in incompletes {
                    self.event(Event::Incomplete(inc));
                }
                self.event(Event::MessageComplete { records: message });
            }
            None => {
                rx.last_accepted = Some(fr.number);
                rx.expected = frame::next_frame_number(fr.number);
                self.write(vec![ACK]);
                for inc in incompletes {
                    self.event(Event::Incomplete(inc));
                }
            }
        }
    }

    pub(super) fn on_raw_byte(&mut self, now: Instant, b: u8) {
        let cap = self.config.profile.max_message_bytes;
        let deadline = Some(now + self.config.timers.receive);
        self.raw.deadline = deadline;
        if b != CR && b != LF {
            if self.raw.first.is_none() {
                let unfinished = !self.raw.records.is_empty() || self.raw.too_large;
                if b == b'H' && unfinished {
                    // A new message starts; the unfinished one is kept
                    // aside, and the size limit starts over.
                    let kept = self
                        .raw
                        .take_incomplete(IncompleteReason::NewHeaderBeforeTerminator);
                    self.raw.deadline = deadline;
                    if let Some(incomplete) = kept {
                        self.event(Event::Incomplete(incomplete));
                    }
                }
                self.raw.first = Some(b);
            }
            let raw = &mut self.raw;
            if raw.size < cap {
                raw.line.push(b);
                raw.size += 1;
            } else {
                raw.too_large = true;
            }
            return;
        }
        let raw = &mut self.raw;
        let Some(first) = raw.first.take() else {
            return;
        };
        let record = std::mem::take(&mut raw.line);
        if !record.is_empty() {
            raw.records.push(record);
        }
        if first != b'L' {
            return;
        }
        if raw.too_large {
            if let Some(incomplete) = raw.take_incomplete(IncompleteReason::TooLarge) {
                self.event(Event::Incomplete(incomplete));
            }
            return;
        }
        let records = std::mem::take(&mut raw.records);
        raw.size = 0;
        raw.deadline = None;
        self.event(Event::MessageComplete { records });
    }
}
