//! Finished tasks waiting for the server to take their ack.
//!
//! A result is kept until the server answers that very ack: an outage, a 5xx or an answer that
//! does not mention it leaves it here to be sent again with the next poll, so a finished render
//! is never lost while the node is alive. An answer is final either way — `ok`, or an error such
//! as `stale_lease` (another attempt owns the task now): re-sending would never succeed.

use crate::wire::queue::AckAnswer;
use crate::wire::tasks::Ack;

/// The acks not yet answered.
#[derive(Debug, Default)]
pub struct Outbox {
    pending: Vec<Ack>,
}

impl Outbox {
    pub fn push(&mut self, ack: Ack) {
        // A second ack for the same lease replaces the first (only one can be right).
        self.pending
            .retain(|a| !(a.id == ack.id && a.lease == ack.lease));
        self.pending.push(ack);
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// What to send with the next poll.
    pub fn snapshot(&self) -> Vec<Ack> {
        self.pending.clone()
    }

    /// Drops the acks the server answered (among those `sent`); returns how many were refused.
    pub fn answered(&mut self, sent: &[Ack], answers: &[AckAnswer]) -> usize {
        let mut refused = 0;
        for answer in answers {
            let Some(ack) = sent.iter().find(|a| a.id == answer.id) else {
                continue;
            };
            if !answer.ok {
                refused += 1;
                let (code, message) = answer
                    .error
                    .as_ref()
                    .map(|e| (e.code.as_str(), e.message.as_str()))
                    .unwrap_or(("", ""));
                if code == "stale_lease" {
                    tracing::warn!(task = %ack.id, %message, "ack refused: the lease is no longer ours; dropping it");
                } else {
                    tracing::error!(task = %ack.id, %code, %message, "ack refused; dropping it");
                }
            }
            self.pending
                .retain(|p| !(p.id == ack.id && p.lease == ack.lease));
        }
        refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::errors::ErrorDetail as ApiError;
    use crate::wire::tasks::AckStatus;

    fn ack(id: &str) -> Ack {
        Ack {
            id: id.into(),
            status: AckStatus::Done,
            lease: "l".into(),
            result: None,
            error: None,
            outputs: Vec::new(),
        }
    }

    fn answer(id: &str, ok: bool, code: &str) -> AckAnswer {
        let error = (!ok).then(|| ApiError {
            code: code.into(),
            message: "m".into(),
            field: None,
        });
        AckAnswer {
            id: id.into(),
            ok,
            error,
        }
    }

    #[test]
    fn unanswered_acks_stay_for_the_next_poll() {
        let mut out = Outbox::default();
        out.push(ack("a"));
        out.push(ack("b"));
        let sent = out.snapshot();
        out.answered(&sent, &[answer("a", true, "")]);
        assert_eq!(
            out.snapshot(),
            vec![ack("b")],
            "b was not answered, it must be re-sent"
        );
    }

    #[test]
    fn stale_lease_answer_is_final() {
        let mut out = Outbox::default();
        out.push(ack("a"));
        let sent = out.snapshot();
        assert_eq!(out.answered(&sent, &[answer("a", false, "stale_lease")]), 1);
        assert!(out.is_empty());
    }

    #[test]
    fn ack_added_while_a_poll_was_in_flight_is_kept() {
        let mut out = Outbox::default();
        out.push(ack("a"));
        let sent = out.snapshot();
        out.push(ack("c"));
        out.answered(&sent, &[answer("a", true, ""), answer("c", true, "")]);
        assert_eq!(
            out.snapshot(),
            vec![ack("c")],
            "c was not in the request that got answered"
        );
    }
}
