//! The runner transform-plugin SDK and ABI, version 1.
//!
//! Only `#[repr(C)]` structs, raw pointers, integers and `extern "C"` functions cross the
//! boundary between runner and a plugin (Rust has no stable ABI); batches cross as Arrow C Data
//! Interface structs. A plugin author implements [`Transform`] and calls [`export_transform!`];
//! no `unsafe` is needed in plugin code. Every entry point catches panics, so a panicking plugin
//! becomes an error in the host, never an abort.
//!
//! # A whole plugin
//!
//! What `runner plugin new shout` writes into `src/lib.rs` (its tests left out), built and run
//! as this crate's doctest, so the template always compiles against this SDK (runner's
//! `plugin::new` tests check that this example is the template):
//!
//! ```
//! use std::sync::Arc;
//!
//! use runner_plugin::arrow_array::cast::AsArray;
//! use runner_plugin::arrow_array::{ArrayRef, RecordBatch, StringArray};
//! use runner_plugin::{export_transform, serde_json, Transform};
//! use serde::Deserialize;
//!
//! /// The plugin's `config:`. Unknown keys are errors, as in runner's own components.
//! #[derive(Debug, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     /// The text column to change.
//!     #[serde(default = "default_column")]
//!     column: String,
//!     /// What to append to every value.
//!     #[serde(default = "default_suffix")]
//!     suffix: String,
//! }
//!
//! fn default_column() -> String {
//!     "word".into()
//! }
//!
//! fn default_suffix() -> String {
//!     "!".into()
//! }
//!
//! /// The plugin's settings and anything it prepares once. `transform` may run on several
//! /// threads at once, so keep shared state behind a Mutex or atomics.
//! pub struct Plugin {
//!     config: Config,
//! }
//!
//! impl Transform for Plugin {
//!     fn new(config: &serde_json::Value, _threads: usize) -> Result<Self, String> {
//!         let config = Config::deserialize(config).map_err(|e| e.to_string())?;
//!         Ok(Plugin { config })
//!     }
//!
//!     /// Appends `suffix` to every value of `column`; other columns pass through unchanged.
//!     fn transform(&self, input: RecordBatch) -> Result<RecordBatch, String> {
//!         let Config { column, suffix } = &self.config;
//!         let index = input
//!             .schema()
//!             .index_of(column)
//!             .map_err(|_| format!("there is no column `{column}`"))?;
//!         let values = input
//!             .column(index)
//!             .as_string_opt::<i32>()
//!             .ok_or_else(|| format!("`{column}` is not text"))?;
//!         let changed: StringArray = values
//!             .iter()
//!             .map(|v| v.map(|v| format!("{v}{suffix}")))
//!             .collect();
//!         let mut columns: Vec<ArrayRef> = input.columns().to_vec();
//!         columns[index] = Arc::new(changed);
//!         RecordBatch::try_new(input.schema(), columns).map_err(|e| e.to_string())
//!     }
//! }
//!
//! export_transform!(Plugin, name = "shout");
//!
//! # fn main() {
//! # use runner_plugin::arrow_schema::{DataType, Field, Schema};
//! let plugin = Plugin::new(&serde_json::json!({"suffix": "?"}), 1).unwrap();
//! let schema = Arc::new(Schema::new(vec![Field::new("word", DataType::Utf8, false)]));
//! let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["romeo"]))]).unwrap();
//! let out = plugin.transform(batch).unwrap();
//! assert_eq!(out.column(0).as_string::<i32>().value(0), "romeo?");
//! # }
//! ```

#![warn(missing_docs)]

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
pub use arrow_array::{self, RecordBatch};
pub use arrow_schema;
pub use serde_json;

#[cfg(panic = "abort")]
compile_error!("runner plugins must be built with panic = \"unwind\": an aborting panic would take the host down");

/// The ABI version this SDK speaks.
pub const ABI_VERSION: u32 = 1;

/// Status codes returned by the table's functions.
///
/// Status: the call succeeded.
pub const OK: i32 = 0;
/// Status: the call failed; the message is in the `RunnerError` passed to it.
pub const ERROR: i32 = 1;
/// Status: the plugin panicked (or aborted) and the panic was caught; the message is in the
/// `RunnerError`, and the host never calls that instance again, not even `destroy`.
pub const PANICKED: i32 = 2;

/// An error message owned by the plugin, released by its own callback.
#[repr(C)]
pub struct RunnerError {
    /// The message as UTF-8 bytes, not NUL-terminated; null when no message was set.
    pub msg: *const u8,
    /// Length of the message at `msg`, in bytes.
    pub len: usize,
    /// Frees the message, set by the side that filled it; `None` when there is nothing to free.
    pub release: Option<unsafe extern "C" fn(*mut RunnerError)>,
    /// Owned by the side that filled the error (the SDK keeps the boxed message here).
    pub private_data: *mut c_void,
}

impl RunnerError {
    /// An error with no message and nothing to release, for the host to pass to a call.
    pub fn empty() -> Self {
        RunnerError {
            msg: std::ptr::null(),
            len: 0,
            release: None,
            private_data: std::ptr::null_mut(),
        }
    }

    /// The message, if one was set. Call [`RunnerError::release`] afterwards.
    ///
    /// # Safety
    /// `msg`/`len` must describe a live UTF-8 buffer, as the SDK's own errors do.
    pub unsafe fn message(&self) -> Option<String> {
        if self.msg.is_null() {
            return None;
        }
        // SAFETY: the caller's promise: `len` live bytes at `msg`.
        let bytes = unsafe { std::slice::from_raw_parts(self.msg, self.len) };
        Some(String::from_utf8_lossy(bytes).into_owned())
    }

    /// Releases the message through the plugin's callback (once).
    ///
    /// # Safety
    /// `release`, if set, must be the callback of the side that filled this error, for this
    /// struct (as [`set_error`] and the C header's contract make it): the fields are public for
    /// the C layout, so nothing else guarantees it.
    pub unsafe fn release(&mut self) {
        if let Some(release) = self.release.take() {
            // SAFETY: the caller's promise.
            unsafe { release(self) };
        }
    }
}

unsafe extern "C" fn release_error(err: *mut RunnerError) {
    if err.is_null() {
        return;
    }
    // SAFETY: `private_data` is the Box<String> leaked by `set_error`.
    unsafe {
        let err = &mut *err;
        if !err.private_data.is_null() {
            drop(Box::from_raw(err.private_data as *mut String));
        }
        err.private_data = std::ptr::null_mut();
        err.msg = std::ptr::null();
        err.len = 0;
        err.release = None;
    }
}

/// Fills `err` with `message` (owned by the plugin until released).
fn fill_error(err: Option<&mut RunnerError>, message: String) {
    if let Some(err) = err {
        // SAFETY: a valid, exclusive reference.
        unsafe { set_error(err, message) };
    }
}

/// Fills `err` with `message` (owned by the plugin until released).
///
/// # Safety
/// `err` must be null or point to a writable `RunnerError`.
pub unsafe fn set_error(err: *mut RunnerError, message: String) {
    if err.is_null() {
        return;
    }
    let boxed = Box::new(message);
    // SAFETY: checked non-null; the host passes a struct it owns for the call.
    unsafe {
        (*err).msg = boxed.as_ptr();
        (*err).len = boxed.len();
        (*err).release = Some(release_error);
        (*err).private_data = Box::into_raw(boxed) as *mut c_void;
    }
}

/// The function table a plugin exports through `runner_plugin_v1`.
#[repr(C)]
pub struct RunnerPluginV1 {
    /// The ABI version of this table, [`ABI_VERSION`].
    pub abi_version: u32,
    /// `size_of::<RunnerPluginV1>()`: fields may only ever be appended.
    pub struct_size: u32,
    /// The plugin's name as a static NUL-terminated string, used in the host's messages; when
    /// null, the host uses the library's file name.
    pub name: *const c_char,
    /// The plugin's version as a static NUL-terminated string, for diagnostics
    /// ([`export_transform!`] gives the crate's version; a C plugin sets its own).
    pub version: *const c_char,
    /// Builds an instance from the pipeline's `config:` map (`len` bytes of JSON; none means an
    /// empty map) and the host's worker count, writing it to `*state`; returns a status code.
    pub create: unsafe extern "C" fn(
        config_json: *const u8,
        len: usize,
        threads: u32,
        state: *mut *mut c_void,
        err: *mut RunnerError,
    ) -> i32,
    /// Transforms one batch: the input array moves to the plugin, the output array and schema
    /// move to the host; returns a status code. May be called from several threads at once.
    pub transform: unsafe extern "C" fn(
        state: *mut c_void,
        input: *mut FFI_ArrowArray,
        input_schema: *const FFI_ArrowSchema,
        output: *mut FFI_ArrowArray,
        output_schema: *mut FFI_ArrowSchema,
        err: *mut RunnerError,
    ) -> i32,
    /// Called once after the last batch; an output left empty (released) means no batch.
    /// `None` (NULL in C) when the plugin has no end step.
    pub finish: Option<
        unsafe extern "C" fn(
            state: *mut c_void,
            output: *mut FFI_ArrowArray,
            output_schema: *mut FFI_ArrowSchema,
            err: *mut RunnerError,
        ) -> i32,
    >,
    /// Frees an instance made by `create`; never called after a call on it panicked.
    pub destroy: unsafe extern "C" fn(state: *mut c_void),
}

// SAFETY: the table is immutable static data (function pointers and static strings).
unsafe impl Sync for RunnerPluginV1 {}

/// What a plugin implements. `transform` may be called from several threads at once (hence
/// `Sync`). After a call panics, the host never calls that instance again, not even `destroy`.
pub trait Transform: Send + Sync + Sized + 'static {
    /// Builds the transform from the pipeline's `config:` map (as JSON); an `Err` is reported
    /// when the pipeline is validated, before any data is read.
    fn new(config: &serde_json::Value, threads: usize) -> Result<Self, String>;
    /// Transforms one batch.
    fn transform(&self, input: RecordBatch) -> Result<RecordBatch, String>;
    /// Called once after the last batch, for plugins that keep state; its batch is appended to
    /// the output.
    fn finish(&self) -> Result<Option<RecordBatch>, String> {
        Ok(None)
    }
}

/// Keeps the rows of `batch` where `keep` is true (a convenience for filtering plugins).
pub fn arrow_select_filter(
    batch: &RecordBatch,
    keep: &arrow_array::BooleanArray,
) -> Result<RecordBatch, String> {
    arrow_select::filter::filter_record_batch(batch, keep).map_err(|e| e.to_string())
}

/// Converts a batch to the C Data Interface (as a struct array whose children are the columns).
pub fn export_batch(batch: RecordBatch) -> Result<(FFI_ArrowArray, FFI_ArrowSchema), String> {
    let array = arrow_array::StructArray::from(batch);
    arrow_array::ffi::to_ffi(&arrow_data::ArrayData::from(array)).map_err(|e| e.to_string())
}

/// Imports a batch from the C Data Interface, taking ownership of `array`.
///
/// # Safety
/// `array` and `schema` must be valid C Data Interface structs describing a struct array.
pub unsafe fn import_batch(
    array: FFI_ArrowArray,
    schema: &FFI_ArrowSchema,
) -> Result<RecordBatch, String> {
    // SAFETY: guaranteed by the caller.
    let data = unsafe { arrow_array::ffi::from_ffi(array, schema) }.map_err(|e| e.to_string())?;
    match data.data_type() {
        arrow_schema::DataType::Struct(_) => {
            Ok(RecordBatch::from(arrow_array::StructArray::from(data)))
        }
        other => Err(format!("expected a struct array (a batch), got {other}")),
    }
}

thread_local! {
    static PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The plugin carries its own copy of std, so this hook covers the plugin's panics only: they
/// become the error message the host prints, instead of a report on stderr.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()));
            PANIC_AT.with(|slot| *slot.borrow_mut() = at);
        }));
    });
}

/// Runs `body`, turning an `Err` into status 1 and a panic into status 2, with a message in `err`.
///
#[doc(hidden)]
pub fn guard(err: Option<&mut RunnerError>, body: impl FnOnce() -> Result<(), String>) -> i32 {
    quiet_panics();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => OK,
        Ok(Err(message)) => {
            fill_error(err, message);
            ERROR
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            let at = PANIC_AT
                .with(|at| at.borrow_mut().take())
                .map(|at| format!(" (at {at})"))
                .unwrap_or_default();
            fill_error(err, format!("the plugin panicked: {what}{at}"));
            PANICKED
        }
    }
}

#[doc(hidden)]
pub mod entry {
    //! The `extern "C"` functions `export_transform!` instantiates for a plugin type.
    use super::*;

    pub unsafe extern "C" fn create<T: Transform>(
        config: *const u8,
        len: usize,
        threads: u32,
        state: *mut *mut c_void,
        err: *mut RunnerError,
    ) -> i32 {
        // SAFETY: the host passes, for every call, null or its own writable RunnerError.
        guard(unsafe { err.as_mut() }, || {
            let bytes = if config.is_null() {
                &[][..]
            } else {
                // SAFETY: the host passes a buffer of `len` bytes of JSON, borrowed for the call.
                unsafe { std::slice::from_raw_parts(config, len) }
            };
            let config: serde_json::Value = if bytes.is_empty() {
                serde_json::Value::Object(Default::default())
            } else {
                serde_json::from_slice(bytes).map_err(|e| format!("config is not JSON: {e}"))?
            };
            let instance = T::new(&config, threads as usize)?;
            // SAFETY: `state` is a valid out-pointer from the host.
            unsafe { *state = Box::into_raw(Box::new(instance)) as *mut c_void };
            Ok(())
        })
    }

    pub unsafe extern "C" fn transform<T: Transform>(
        state: *mut c_void,
        input: *mut FFI_ArrowArray,
        input_schema: *const FFI_ArrowSchema,
        output: *mut FFI_ArrowArray,
        output_schema: *mut FFI_ArrowSchema,
        err: *mut RunnerError,
    ) -> i32 {
        // SAFETY: the host passes, for every call, null or its own writable RunnerError.
        guard(unsafe { err.as_mut() }, || {
            // SAFETY: `state` was made by `create::<T>`. The input array moves to the plugin:
            // it is taken out (leaving a released, empty struct to the host) and released
            // through its own callback when dropped, so the host's allocator frees it.
            let instance = unsafe { &*(state as *const T) };
            if input.is_null() || input_schema.is_null() {
                return Err("the host passed no batch".into());
            }
            // SAFETY: checked non-null; the host passes its own live input struct.
            let array = unsafe { std::ptr::replace(input, FFI_ArrowArray::empty()) };
            // SAFETY: the host's batch and schema are valid C Data Interface structs.
            let batch = unsafe { import_batch(array, &*input_schema) }?;
            let result = instance.transform(batch)?;
            let (array, schema) = export_batch(result)?;
            // SAFETY: out-pointers from the host; ownership moves to it.
            unsafe {
                std::ptr::write(output, array);
                std::ptr::write(output_schema, schema);
            }
            Ok(())
        })
    }

    pub unsafe extern "C" fn finish<T: Transform>(
        state: *mut c_void,
        output: *mut FFI_ArrowArray,
        output_schema: *mut FFI_ArrowSchema,
        err: *mut RunnerError,
    ) -> i32 {
        // SAFETY: the host passes, for every call, null or its own writable RunnerError.
        guard(unsafe { err.as_mut() }, || {
            // SAFETY: as in `transform`.
            let instance = unsafe { &*(state as *const T) };
            let (array, schema) = match instance.finish()? {
                Some(batch) => export_batch(batch)?,
                None => (FFI_ArrowArray::empty(), FFI_ArrowSchema::empty()),
            };
            // SAFETY: out-pointers from the host; ownership moves to it.
            unsafe {
                std::ptr::write(output, array);
                std::ptr::write(output_schema, schema);
            }
            Ok(())
        })
    }

    pub unsafe extern "C" fn destroy<T: Transform>(state: *mut c_void) {
        if !state.is_null() {
            let _ = catch_unwind(|| {
                // SAFETY: made by `create::<T>` and destroyed once by the host.
                drop(unsafe { Box::from_raw(state as *mut T) });
            });
        }
    }
}

/// Exports a [`Transform`] as a runner plugin:
/// `export_transform!(MinLength, name = "min_length");`
#[macro_export]
macro_rules! export_transform {
    ($type:ty, name = $name:literal) => {
        #[no_mangle]
        pub extern "C" fn runner_plugin_abi_version() -> u32 {
            $crate::ABI_VERSION
        }

        #[no_mangle]
        pub extern "C" fn runner_plugin_v1() -> *const $crate::RunnerPluginV1 {
            static TABLE: $crate::RunnerPluginV1 = $crate::RunnerPluginV1 {
                abi_version: $crate::ABI_VERSION,
                struct_size: ::std::mem::size_of::<$crate::RunnerPluginV1>() as u32,
                name: concat!($name, "\0").as_ptr() as *const ::std::ffi::c_char,
                version: concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr()
                    as *const ::std::ffi::c_char,
                create: $crate::entry::create::<$type>,
                transform: $crate::entry::transform::<$type>,
                finish: Some($crate::entry::finish::<$type>),
                destroy: $crate::entry::destroy::<$type>,
            };
            &TABLE
        }
    };
}
