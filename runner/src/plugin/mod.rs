//! The plugin host: loads transform plugins (shared libraries speaking the C ABI defined in the
//! `runner-plugin` crate) and calls them with Arrow C Data Interface batches.
//!
//! A library is loaded once per canonical path and never unloaded (unloading code that may have
//! left thread-locals behind is unsound). `runner_plugin_abi_version` is checked before any other
//! symbol is looked up. Every failure (not a library, missing symbol, other ABI version, an
//! error or a panic inside the plugin) is an error message naming the plugin, never an abort.

pub mod new;

use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use arrow_array::ffi::{from_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::{Array, RecordBatch, StructArray};
use runner_plugin::{RunnerError, RunnerPluginV1, ABI_VERSION, OK, PANICKED};

/// A loaded plugin library and its function table.
#[derive(Clone, Copy)]
pub struct Plugin {
    table: &'static RunnerPluginV1,
    /// For messages: the plugin's name, else its file name.
    pub name: &'static str,
}

fn loaded() -> &'static Mutex<HashMap<PathBuf, Plugin>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Plugin>>> = OnceLock::new();
    LOADED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Loads the plugin at `path` (once per canonical path).
pub fn load(path: &Path) -> Result<Plugin, String> {
    let canonical = path.canonicalize().map_err(|e| {
        format!(
            "cannot open plugin {}: {e} (build it first, e.g. `cargo build --release -p NAME`)",
            path.display()
        )
    })?;
    let mut loaded = loaded().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(plugin) = loaded.get(&canonical) {
        return Ok(*plugin);
    }
    let shown = canonical.display();
    // SAFETY: loading runs the library's initialisers; plugins are only loaded from paths the
    // user wrote in the pipeline file, which is the trust boundary of this feature.
    let library = unsafe { libloading::Library::new(&canonical) }
        .map_err(|e| format!("{shown} is not a loadable shared library: {e}"))?;
    // Never unloaded: leak it for the life of the process.
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: the symbol's signature is frozen by the ABI: `uint32_t (void)`.
    let version = unsafe { library.get::<unsafe extern "C" fn() -> u32>(b"runner_plugin_abi_version\0") }
        .map_err(|_| format!("{shown} is not a runner plugin: it has no `runner_plugin_abi_version` symbol (export one with runner_plugin::export_transform!)"))?;
    // SAFETY: as above.
    let reported = unsafe { version() };
    if reported != ABI_VERSION {
        return Err(format!(
            "{shown} speaks plugin ABI version {reported}, but this runner speaks version {ABI_VERSION}: rebuild the plugin against the runner-plugin crate of this runner"
        ));
    }
    // SAFETY: version 1 promises `const RunnerPluginV1 *(void)`.
    let table_fn = unsafe {
        library.get::<unsafe extern "C" fn() -> *const RunnerPluginV1>(b"runner_plugin_v1\0")
    }
    .map_err(|_| format!("{shown} reports ABI version 1 but has no `runner_plugin_v1` symbol"))?;
    // SAFETY: the table is static data in the library, which is never unloaded.
    let table = unsafe { table_fn().as_ref() }
        .ok_or_else(|| format!("{shown} returned no function table"))?;
    if table.abi_version != ABI_VERSION
        || (table.struct_size as usize) < std::mem::size_of::<RunnerPluginV1>()
    {
        return Err(format!(
            "{shown} has a malformed function table (version {}, size {})",
            table.abi_version, table.struct_size
        ));
    }
    let name = if table.name.is_null() {
        canonical
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        // SAFETY: a NUL-terminated static string in the library.
        unsafe { CStr::from_ptr(table.name) }
            .to_string_lossy()
            .into_owned()
    };
    let plugin = Plugin {
        table,
        name: Box::leak(name.into_boxed_str()),
    };
    loaded.insert(canonical, plugin);
    Ok(plugin)
}

/// Takes the message out of a plugin error and releases it through the plugin's callback.
fn take_message(err: &mut RunnerError, status: i32) -> String {
    // SAFETY: the SDK sets `msg`/`len` to a live UTF-8 buffer it owns until released.
    let message = unsafe { err.message() }.unwrap_or_else(|| "no message".into());
    err.release();
    if status == PANICKED {
        message
    } else {
        message.trim_start_matches("error: ").to_owned()
    }
}

/// One created instance of a plugin (its `create` ran with the pipeline's config).
pub struct Instance {
    plugin: Plugin,
    state: *mut c_void,
}

// SAFETY: the ABI requires plugin state to be usable from several threads at once
// (`transform` may run concurrently); create/destroy are never concurrent with other calls.
unsafe impl Send for Instance {}
unsafe impl Sync for Instance {}

impl Plugin {
    /// Runs the plugin's `create` with `config` (re-encoded as JSON).
    pub fn create(&self, config: &serde_json::Value, threads: usize) -> Result<Instance, String> {
        let json = config.to_string();
        let mut state: *mut c_void = std::ptr::null_mut();
        let mut err = RunnerError::empty();
        // SAFETY: the ABI's create: JSON bytes borrowed for the call, an out-pointer for state.
        let status = unsafe {
            (self.table.create)(
                json.as_ptr(),
                json.len(),
                threads as u32,
                &mut state,
                &mut err,
            )
        };
        if status != OK {
            return Err(take_message(&mut err, status));
        }
        Ok(Instance {
            plugin: *self,
            state,
        })
    }
}

impl Instance {
    /// Sends `batch` through the plugin.
    pub fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        let data = StructArray::from(batch.clone()).into_data();
        let mut input = FFI_ArrowArray::new(&data);
        let input_schema =
            FFI_ArrowSchema::try_from(data.data_type()).map_err(|e| e.to_string())?;
        let mut output = FFI_ArrowArray::empty();
        let mut output_schema = FFI_ArrowSchema::empty();
        let mut err = RunnerError::empty();
        // SAFETY: the ABI's transform. The input array moves to the plugin (which leaves a
        // released struct behind); the output moves to us and is released by arrow-rs.
        let status = unsafe {
            (self.plugin.table.transform)(
                self.state,
                &mut input,
                &input_schema,
                &mut output,
                &mut output_schema,
                &mut err,
            )
        };
        if status != OK {
            return Err(take_message(&mut err, status));
        }
        // SAFETY: on success the plugin filled both structs with a struct array.
        let data = unsafe { from_ffi(output, &output_schema) }
            .map_err(|e| format!("the plugin returned an invalid batch: {e}"))?;
        if !matches!(data.data_type(), arrow_schema::DataType::Struct(_)) {
            return Err(format!(
                "the plugin returned {} instead of a batch (a struct array)",
                data.data_type()
            ));
        }
        Ok(RecordBatch::from(StructArray::from(data)))
    }
}

impl Instance {
    /// Runs the plugin's `finish`, if it has one: its last batch, or nothing.
    pub fn finish(&self) -> Result<Option<RecordBatch>, String> {
        let Some(finish) = self.plugin.table.finish else {
            return Ok(None);
        };
        let mut output = FFI_ArrowArray::empty();
        let mut output_schema = FFI_ArrowSchema::empty();
        let mut err = RunnerError::empty();
        // SAFETY: the ABI's finish; an output left empty (released) means "no batch".
        let status = unsafe { finish(self.state, &mut output, &mut output_schema, &mut err) };
        if status != OK {
            return Err(take_message(&mut err, status));
        }
        if output.is_released() {
            return Ok(None);
        }
        // SAFETY: the plugin filled both structs with a struct array.
        let data = unsafe { from_ffi(output, &output_schema) }
            .map_err(|e| format!("the plugin returned an invalid batch: {e}"))?;
        Ok(Some(RecordBatch::from(StructArray::from(data))))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if !self.state.is_null() {
            // SAFETY: made by this plugin's create, destroyed exactly once.
            unsafe { (self.plugin.table.destroy)(self.state) };
        }
    }
}
