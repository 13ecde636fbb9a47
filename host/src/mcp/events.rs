//! A running call's progress reports and log lines, sent to the client as
//! `notifications/progress` (only when the request carried a progress token)
//! and `notifications/message` (only at or above the level the client asked
//! for, never when it asked for none).
#![allow(deprecated)] // logging is deprecated by SEP-2577 but still part of both eras

use std::sync::Arc;

use rmcp::model::{
    LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken,
};
use rmcp::{Peer, RoleServer};
use tokio::sync::mpsc;

use crate::sandbox::{CallEvents, LogLevel};

/// Notifications queued per call before further ones are dropped.
const QUEUE: usize = 64;

enum Event {
    Progress(ProgressNotificationParam),
    Log(LoggingMessageNotificationParam),
}

/// Queues a call's events for the client; the queue is drained by a task
/// that [`Forwarder::finish`] waits for, so every event is sent before the
/// response.
pub(super) struct Forwarder {
    tx: mpsc::Sender<Event>,
    progress_token: Option<ProgressToken>,
    min_level: Option<LoggingLevel>,
    logger: String,
    /// The last progress sent: values only increase over the whole call,
    /// across rounds (each round's instance starts again from nothing).
    last_progress: std::sync::Mutex<Option<f64>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("progress", &self.progress_token.is_some())
            .field("min_level", &self.min_level)
            .finish_non_exhaustive()
    }
}

/// The task sending a call's events; [`Sending::finish`] waits for it.
pub(super) struct Sending(Option<tokio::task::JoinHandle<()>>);

impl Sending {
    /// Wait until every queued event was sent (the forwarder must be dropped).
    pub(super) async fn finish(mut self) {
        if let Some(task) = self.0.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// How MCP ranks a level (higher is more severe).
pub(super) fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

fn mcp_level(level: LogLevel) -> LoggingLevel {
    match level {
        LogLevel::Trace | LogLevel::Debug => LoggingLevel::Debug,
        LogLevel::Info => LoggingLevel::Info,
        LogLevel::Warn => LoggingLevel::Warning,
        LogLevel::Error => LoggingLevel::Error,
    }
}

impl Forwarder {
    /// Events for one call of `tool`, to `peer`; `None` when there is
    /// nothing the client asked to receive.
    pub(super) fn start(
        peer: Peer<RoleServer>,
        tool: &str,
        progress_token: Option<ProgressToken>,
        min_level: Option<LoggingLevel>,
    ) -> Option<(Arc<Forwarder>, Sending)> {
        if progress_token.is_none() && min_level.is_none() {
            return None;
        }
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let sent = match event {
                    Event::Progress(p) => peer.notify_progress(p).await,
                    Event::Log(l) => peer.notify_logging_message(l).await,
                };
                if sent.is_err() {
                    // The client went away; the rest is dropped.
                    break;
                }
            }
        });
        Some((
            Arc::new(Forwarder {
                tx,
                progress_token,
                min_level,
                logger: tool.to_string(),
                last_progress: std::sync::Mutex::new(None),
            }),
            Sending(Some(task)),
        ))
    }
}

impl CallEvents for Forwarder {
    fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>) {
        let Some(token) = &self.progress_token else {
            return;
        };
        {
            let mut last = self
                .last_progress
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|last| progress <= last) {
                return;
            }
            *last = Some(progress);
        }
        let mut param = ProgressNotificationParam::new(token.clone(), progress);
        param.total = total;
        param.message = message;
        let _ = self.tx.try_send(Event::Progress(param));
    }

    fn log(&self, level: LogLevel, message: &str) {
        let Some(min) = self.min_level else {
            return;
        };
        let level = mcp_level(level);
        if rank(level) < rank(min) {
            return;
        }
        let param = LoggingMessageNotificationParam::new(level, serde_json::Value::from(message))
            .with_logger(self.logger.clone());
        let _ = self.tx.try_send(Event::Log(param));
    }
}
