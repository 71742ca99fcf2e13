//! [`BuildEvent`]: what the build queue reports as it goes, and
//! [`EventSink`], where it reports it.
//!
//! Key decision: events are plain serialisable data, one enum; the CLI turns
//! them into progress lines or `--json` objects, tests collect them.

use serde::Serialize;

/// One thing that happened to one element.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum BuildEvent {
    /// The element is part of the build.
    Queued {
        /// The element.
        element: String,
        /// Its strong key.
        key: String,
    },
    /// The element's artifact was found in the cache; nothing runs.
    Cached {
        /// The element.
        element: String,
        /// Its strong key.
        key: String,
    },
    /// Building the element started (attempt 1, 2, ...).
    Started {
        /// The element.
        element: String,
        /// The attempt number, from 1.
        attempt: u32,
    },
    /// An attempt failed transiently; the element will be tried again.
    Retrying {
        /// The element.
        element: String,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: String,
    },
    /// The element was built and its artifact stored.
    Finished {
        /// The element.
        element: String,
        /// Its strong key.
        key: String,
        /// Wall time of the build in milliseconds.
        millis: u64,
    },
    /// The element failed.
    Failed {
        /// The element.
        element: String,
        /// The error.
        error: String,
        /// The command's exit code, when it ran and failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// The last lines of its log.
        #[serde(skip_serializing_if = "String::is_empty")]
        log_tail: String,
        /// The full logs in the CAS (`hash/size`).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        logs: Vec<String>,
    },
    /// The element was not built because a dependency failed or the build stopped.
    Skipped {
        /// The element.
        element: String,
    },
    /// The element's action ran (or was found in the remote's action
    /// cache): how long the worker spent, from its ExecutedActionMetadata.
    Executed {
        /// The element.
        element: String,
        /// The action digest (`hash/size`).
        action: String,
        /// Whether the result came from the action cache (nothing ran).
        cached_result: bool,
        /// The command's run time on the worker (execution start to end), in
        /// milliseconds (with microseconds as decimals, like the others).
        run_millis: f64,
        /// The worker's whole handling (inputs staged to outputs uploaded), in milliseconds.
        worker_millis: f64,
        /// Of that, fetching and staging the inputs, in milliseconds.
        input_millis: f64,
        /// Of that, collecting and storing the outputs, in milliseconds.
        output_millis: f64,
        /// The `Execute` call as the scheduler saw it (request sent to result
        /// received: the worker's handling plus queueing, the action cache
        /// and the network), in milliseconds.
        execute_millis: f64,
    },
    /// A source file was downloaded (and its sha256 verified) before the
    /// build; files already in the source cache are not reported.
    Fetched {
        /// The first element needing the file.
        element: String,
        /// The URL downloaded (aliases resolved).
        url: String,
        /// Its size in bytes.
        bytes: u64,
        /// Wall time of the download in milliseconds.
        millis: u64,
    },
    /// A configurable warning while staging the element's dependencies
    /// (BuildStream's `overlaps`, `unstaged-files`), not fatal in its project.
    Warning {
        /// The element being built.
        element: String,
        /// The warning token.
        token: String,
        /// The one-line message.
        brief: String,
        /// The detail lines (the paths and the elements involved).
        detail: String,
    },
}

/// Receives events; must be cheap (called from the queue's tasks).
pub trait EventSink: Send + Sync {
    /// Handles one event.
    fn emit(&self, event: BuildEvent);
}

/// Collects events in memory (tests, summaries).
#[derive(Debug, Default)]
pub struct EventLog {
    events: std::sync::Mutex<Vec<BuildEvent>>,
}

impl EventLog {
    /// The events so far.
    pub fn events(&self) -> Vec<BuildEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl EventSink for EventLog {
    fn emit(&self, event: BuildEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}
