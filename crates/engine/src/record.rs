//! The audit chain's writer: every action is an intent before and an outcome after, with
//! the planner's reasons; logging is not the audit trail, this is.

use catalog::NewEvent;
use provider::{Act, EventKind};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{Engine, EngineError};

/// A recorded intent, waiting for its outcome.
#[derive(Debug, Clone)]
pub struct Intent {
    /// Its place in the chain; the outcome names it.
    pub seq: i64,
    /// The act.
    pub act: Act,
    /// What it is about.
    pub subject: String,
}

/// How an act ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It did its work.
    Done,
    /// It failed; the data says why.
    Failed,
    /// It was stopped (the operator, or a run that died).
    Interrupted,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// What an act's body returns when it did its work.
pub(crate) struct Done {
    /// The outcome's reason, for people.
    pub reason: String,
    /// The outcome's data.
    pub data: Value,
}

/// What an act's body returns when it did not.
pub(crate) struct Fail {
    pub error: EngineError,
    /// What it got to, for the outcome's data.
    pub data: Value,
}

impl From<EngineError> for Fail {
    fn from(error: EngineError) -> Fail {
        Fail { error, data: json!({}) }
    }
}

impl From<catalog::CatalogError> for Fail {
    fn from(e: catalog::CatalogError) -> Fail {
        Fail::from(EngineError::from(e))
    }
}

/// An intent a dead run left open, now closed as interrupted.
#[derive(Debug, Clone, Serialize)]
pub struct Closed {
    /// The intent's place in the chain.
    pub seq: i64,
    /// Its kind (`publish.intent`).
    pub kind: String,
    /// What it was about.
    pub subject: String,
    /// When it was recorded.
    pub time: String,
}

fn with(mut data: Value, extra: Value) -> Value {
    if !data.is_object() {
        data = json!({ "value": data });
    }
    if let (Some(d), Value::Object(e)) = (data.as_object_mut(), extra) {
        d.extend(e);
    }
    data
}

impl Engine {
    fn append(&self, ev: NewEvent<'_>) -> Result<i64, EngineError> {
        Ok(self.catalog().append_event(&ev)?.seq)
    }

    /// Records an event that is neither intent nor outcome.
    pub(crate) fn note(&self, kind: EventKind, subject: &str, reason: &str, data: Value) -> Result<i64, EngineError> {
        let time = self.now().to_string();
        self.append(NewEvent {
            time: &time,
            actor: &self.actor,
            kind: kind.as_str(),
            subject,
            reason,
            data: &data,
            opens: false,
            closes: None,
        })
    }

    /// Records an act's intent.
    pub(crate) fn intent(&self, act: Act, subject: &str, reason: &str, data: Value) -> Result<Intent, EngineError> {
        let time = self.now().to_string();
        let seq = self.append(NewEvent {
            time: &time,
            actor: &self.actor,
            kind: EventKind::Intent(act).as_str(),
            subject,
            reason,
            data: &data,
            opens: true,
            closes: None,
        })?;
        Ok(Intent { seq, act, subject: subject.to_string() })
    }

    /// Records an intent's outcome; the data names the intent.
    pub(crate) fn outcome(
        &self,
        intent: &Intent,
        outcome: Outcome,
        reason: &str,
        data: Value,
    ) -> Result<(), EngineError> {
        let time = self.now().to_string();
        let data = with(data, json!({ "intent": intent.seq, "result": outcome.as_str() }));
        self.append(NewEvent {
            time: &time,
            actor: &self.actor,
            kind: EventKind::Outcome(intent.act).as_str(),
            subject: &intent.subject,
            reason,
            data: &data,
            opens: false,
            closes: Some(intent.seq),
        })?;
        Ok(())
    }

    /// Runs `body` between its intent and its outcome: done, failed (with the error), or
    /// interrupted. Returns the outcome's data, or the body's error.
    pub(crate) fn recorded(
        &self,
        act: Act,
        subject: &str,
        reason: &str,
        intent_data: Value,
        body: impl FnOnce() -> Result<Done, Fail>,
    ) -> Result<Value, EngineError> {
        let intent = self.intent(act, subject, reason, intent_data)?;
        match body() {
            Ok(done) => {
                self.outcome(&intent, Outcome::Done, &done.reason, done.data.clone())?;
                Ok(done.data)
            }
            Err(fail) => {
                let (outcome, reason) = if fail.error.is_cancelled() {
                    (Outcome::Interrupted, "interrupted by the operator".to_string())
                } else {
                    (Outcome::Failed, "failed".to_string())
                };
                let data = with(fail.data, json!({ "error": fail.error.text() }));
                match self.outcome(&intent, outcome, &reason, data) {
                    Ok(()) => Err(fail.error),
                    // Both matter: what failed, and that its outcome is not in the chain.
                    Err(e) => Err(EngineError::Failed(format!(
                        "{}; recording its outcome failed too: {}",
                        fail.error.text(),
                        e.text()
                    ))),
                }
            }
        }
    }

    /// Closes every intent a run that died left without an outcome, as interrupted, and
    /// says which. Runs under the run lock, before anything else.
    pub fn close_open_intents(&self) -> Result<Vec<Closed>, EngineError> {
        let open = self.catalog().open_intents()?;
        let mut closed = Vec::new();
        for e in open {
            let Some(EventKind::Intent(act)) = EventKind::parse(&e.kind) else { continue };
            let intent = Intent { seq: e.seq, act, subject: e.subject.clone() };
            self.outcome(
                &intent,
                Outcome::Interrupted,
                "the run that started it ended before recording an outcome",
                json!({ "intent_time": e.time }),
            )?;
            closed.push(Closed { seq: e.seq, kind: e.kind, subject: e.subject, time: e.time });
        }
        Ok(closed)
    }
}
