//! # toe — AWSTOE-compatible component documents
//!
//! EC2 Image Builder installs agents with *component documents*: YAML with `build`,
//! `validate` and `test` phases of steps, each step an action module (`ExecuteBash`,
//! `CreateFile`, `WebDownload` …) with `{{ }}` expressions, loops and conditions. This crate
//! runs those documents unchanged, so a component can be tested in seconds on a laptop or
//! in a rootfs sandbox instead of in a 30-minute cloud build.
//!
//! - [`Document::load`] parses and validates, collecting **every** problem as a
//!   [`Diagnostic`] with file, line, column, a stable code and a fix hint.
//! - [`run`] executes documents in awstoe order and writes awstoe's log folder
//!   (`console.log`, `application.log`, `detailedoutput.json`, `chaining.json`).
//!
//! The crate does no AWS and no sandboxing: S3 goes through [`ObjectStore`], SSM parameters
//! through [`ParameterStore`], and isolation is the caller's (see the `sandbox` crate).
//!
//! ```no_run
//! use toe::{Document, RunOptions, run, NoObserver};
//! let (doc, _warnings) = Document::load("hello.yml".as_ref()).expect("valid document");
//! let opts = RunOptions {
//!     phases: None, parameters: vec![], execution_id: None,
//!     log_directory: ".".into(), log_directory_display: None,
//!     state_directory: ".toe-state".into(), object_store: None, parameter_store: None, components: None,
//!     secrets: vec![],
//! };
//! let outcome = run(&[doc], &opts, &mut NoObserver).expect("run");
//! ```

pub mod actions;
pub mod component;
pub mod condition;
pub mod diag;
pub mod digest;
pub mod document;
pub mod engine;
pub mod expr;
pub mod input;
pub mod modules;
pub mod objstore;
pub mod process;
pub mod report;
pub mod yaml;

pub use diag::{Diagnostic, Severity};
pub use document::Document;
pub use engine::{EngineError, NoObserver, Observer, RunOptions, RunOutcome, run};
pub use objstore::{DirectoryStore, ObjectStore, ParameterStore};
pub use report::{Status, Summary};
