//! The plugin host: loads transform plugins (shared libraries speaking the C ABI defined in the
//! `runner-plugin` crate) and calls them with Arrow C Data Interface batches.
//!
//! A library is loaded once per canonical path and never unloaded (unloading code that may have
//! left thread-locals behind is unsound). `runner_plugin_abi_version` is checked before any other
//! symbol is looked up. Every failure (not a library, missing symbol, other ABI version, an
//! error or a panic inside the plugin) is an error message naming the plugin, never an abort.

pub mod import;
pub mod new;

use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::{Array, RecordBatch, StructArray};
use runner_plugin::{RunnerError, ABI_VERSION, OK, PANICKED};

type CreateFn =
    unsafe extern "C" fn(*const u8, usize, u32, *mut *mut c_void, *mut RunnerError) -> i32;
type TransformFn = unsafe extern "C" fn(
    *mut c_void,
    *mut FFI_ArrowArray,
    *const FFI_ArrowSchema,
    *mut FFI_ArrowArray,
    *mut FFI_ArrowSchema,
    *mut RunnerError,
) -> i32;
type FinishFn = unsafe extern "C" fn(
    *mut c_void,
    *mut FFI_ArrowArray,
    *mut FFI_ArrowSchema,
    *mut RunnerError,
) -> i32;
type DestroyFn = unsafe extern "C" fn(*mut c_void);

/// `RunnerPluginV1` as the C header declares it, every pointer nullable: a plugin's table is
/// read this way so that a NULL entry is an error (a Rust `fn` pointer is never null, so the
/// SDK's own struct cannot hold one without undefined behaviour).
#[repr(C)]
struct RawTable {
    abi_version: u32,
    struct_size: u32,
    name: *const c_char,
    version: *const c_char,
    create: Option<CreateFn>,
    transform: Option<TransformFn>,
    finish: Option<FinishFn>,
    destroy: Option<DestroyFn>,
}

const _: () = assert!(
    std::mem::size_of::<RawTable>() == std::mem::size_of::<runner_plugin::RunnerPluginV1>()
);

/// A loaded plugin library and its (checked) function table.
#[derive(Clone, Copy)]
pub struct Plugin {
    create: CreateFn,
    transform: TransformFn,
    finish: Option<FinishFn>,
    destroy: DestroyFn,
    /// For messages: the plugin's name, else its file name.
    pub name: &'static str,
}

/// Longest error message taken from a plugin; the rest is cut (a plugin's `len` is not trusted).
const MAX_MESSAGE: usize = 16 << 10;

fn loaded() -> &'static Mutex<HashMap<PathBuf, Plugin>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Plugin>>> = OnceLock::new();
    LOADED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Loads the plugin at `path` (once per canonical path).
pub fn load(path: &Path) -> Result<Plugin, String> {
    let canonical = path.canonicalize().map_err(|e| {
        // `libstemmer.so` is built by the package `stemmer`.
        let package = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .map(|s| s.strip_prefix("lib").map(str::to_owned).unwrap_or(s))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "NAME".into());
        // A C plugin is built with the C compiler; the help names both ways.
        format!(
            "cannot open plugin {}: {e}\nhelp: build it first: a Rust plugin with `cargo build --release -p {package}`, a C one with `cc -shared -fPIC -I plugins/sdk/include -o {} ...`",
            path.display(),
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
    // SAFETY: version 1 promises `const RunnerPluginV1 *(void)`; read as `RawTable`, the same
    // layout with nullable entries.
    let table_fn =
        unsafe { library.get::<unsafe extern "C" fn() -> *const RawTable>(b"runner_plugin_v1\0") }
            .map_err(|_| {
                format!("{shown} reports ABI version 1 but has no `runner_plugin_v1` symbol")
            })?;
    let invalid = |why: String| format!("{shown} returned an invalid function table: {why}");
    // SAFETY: the ABI's function, no arguments.
    let table = unsafe { table_fn() };
    if table.is_null() || !table.is_aligned() {
        return Err(invalid(format!("a pointer {table:p}")));
    }
    // Pointers from the plugin are checked against the process's readable memory before
    // they are read, as every pointer in its batches is.
    let memory = import::Memory::snapshot();
    if !memory.readable(table.cast(), 8) {
        return Err(invalid(format!(
            "a pointer {table:p} to memory that is not readable"
        )));
    }
    // SAFETY: the first two fields (8 readable bytes, checked) are read before
    // `struct_size` says the rest exists; the table is static data in the library, which is
    // never unloaded.
    let (abi_version, struct_size) = unsafe { ((*table).abi_version, (*table).struct_size) };
    if abi_version != ABI_VERSION || (struct_size as usize) < std::mem::size_of::<RawTable>() {
        return Err(invalid(format!(
            "version {abi_version} and size {struct_size} (expected {ABI_VERSION} and at least {})",
            std::mem::size_of::<RawTable>()
        )));
    }
    if !memory.readable(table.cast(), std::mem::size_of::<RawTable>()) {
        return Err(invalid(format!(
            "a pointer {table:p} to memory that is not readable"
        )));
    }
    // SAFETY: `struct_size` says the whole table is there, and its bytes are readable.
    let table = unsafe { &*table };
    let missing = |entry: &str| invalid(format!("its `{entry}` entry is NULL"));
    let name = if table.name.is_null() {
        canonical
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        let name = import::c_string(&memory, table.name, "its `name`").map_err(invalid)?;
        import::one_line(&name.to_string_lossy())
    };
    let plugin = Plugin {
        create: table.create.ok_or_else(|| missing("create"))?,
        transform: table.transform.ok_or_else(|| missing("transform"))?,
        finish: table.finish,
        destroy: table.destroy.ok_or_else(|| missing("destroy"))?,
        name: Box::leak(name.into_boxed_str()),
    };
    loaded.insert(canonical, plugin);
    Ok(plugin)
}

/// Takes the message out of a plugin error (at most `MAX_MESSAGE` bytes of it, checked mapped,
/// control characters escaped) and releases it through the plugin's callback.
fn take_message(err: &mut RunnerError, status: i32) -> String {
    let known = matches!(status, runner_plugin::ERROR | PANICKED);
    let message = match (import::message(err.msg, err.len), known) {
        (Some(message), true) => message,
        (None, true) => "it failed without a message".into(),
        (message, false) => format!(
            "it returned status {status}, which the ABI does not have (0 ok, 1 error, 2 a panic){}",
            message.map_or_else(|| ", and no message".into(), |m| format!(": {m}"))
        ),
    };
    // SAFETY: the callback, if any, was set by the plugin for this struct.
    unsafe { err.release() };
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
    /// Set when a call panicked: its state may be broken, so it is never called again (not
    /// even `destroy`; the state is leaked).
    poisoned: AtomicBool,
}

// SAFETY: the ABI requires plugin state to be usable from several threads at once
// (`transform` may run concurrently); create/destroy are never concurrent with other calls.
unsafe impl Send for Instance {}
// SAFETY: as above.
unsafe impl Sync for Instance {}

impl Plugin {
    /// Runs the plugin's `create` with `config` (re-encoded as JSON).
    pub fn create(&self, config: &serde_json::Value, threads: usize) -> Result<Instance, String> {
        let json = config.to_string();
        let mut state: *mut c_void = std::ptr::null_mut();
        let mut err = RunnerError::empty();
        // SAFETY: the ABI's create: JSON bytes borrowed for the call, an out-pointer for state.
        let status = unsafe {
            (self.create)(
                json.as_ptr(),
                json.len(),
                u32::try_from(threads).unwrap_or(u32::MAX),
                &mut state,
                &mut err,
            )
        };
        if status != OK {
            return Err(format!(
                "plugin {}: {}",
                self.name,
                take_message(&mut err, status)
            ));
        }
        Ok(Instance {
            plugin: *self,
            state,
            poisoned: AtomicBool::new(false),
        })
    }
}

impl Instance {
    /// The plugin's name, for messages.
    pub fn name(&self) -> &'static str {
        self.plugin.name
    }

    /// Fails when an earlier call panicked.
    fn usable(&self) -> Result<(), String> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(format!(
                "plugin {} panicked earlier and is not called again",
                self.plugin.name
            ));
        }
        Ok(())
    }

    /// A failed call's message; a panic poisons the instance.
    fn failed(&self, err: &mut RunnerError, status: i32) -> String {
        if status == PANICKED {
            self.poisoned.store(true, Ordering::Release);
        }
        format!("plugin {}: {}", self.plugin.name, take_message(err, status))
    }

    /// Sends `batch` through the plugin.
    pub fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        self.usable()?;
        let data = StructArray::from(batch.clone()).into_data();
        let mut input = FFI_ArrowArray::new(&data);
        let input_schema =
            FFI_ArrowSchema::try_from(data.data_type()).map_err(|e| e.to_string())?;
        let mut output = FFI_ArrowArray::empty();
        let mut output_schema = FFI_ArrowSchema::empty();
        let mut err = RunnerError::empty();
        // SAFETY: the ABI's transform. The input array moves to the plugin (which leaves a
        // released struct behind); the output moves to us and is checked before it is read.
        let status = unsafe {
            (self.plugin.transform)(
                self.state,
                &mut input,
                &input_schema,
                &mut output,
                &mut output_schema,
                &mut err,
            )
        };
        if status != OK {
            return Err(self.failed(&mut err, status));
        }
        // Structs copied from runner's own without being moved would be released twice: the
        // copy is forgotten (runner's struct frees what it holds, once) and the run fails.
        let array_shared = import::shares_array(&input, &output);
        let schema_shared = import::shares_schema(&input_schema, &output_schema);
        if array_shared || schema_shared {
            if array_shared {
                std::mem::forget(output);
            }
            if schema_shared {
                std::mem::forget(output_schema);
            }
            let what = match (array_shared, schema_shared) {
                (true, true) => "the input array and schema as its own without taking them",
                (true, false) => "the input array as its own without taking it",
                _ => "the input schema as its own without taking it",
            };
            return Err(format!(
                "plugin {} returned {what} over: a copied struct must be moved (set the input's `release` to NULL) and a schema must be the plugin's own copy (see docs/plugins.md)",
                self.plugin.name
            ));
        }
        import::import_batch(output, &output_schema)
            .map_err(|e| format!("plugin {} returned an invalid batch: {e}", self.plugin.name))
    }

    /// Whether the plugin has a `finish` (it may keep state and return rows at the end).
    pub fn has_finish(&self) -> bool {
        self.plugin.finish.is_some()
    }

    /// Runs the plugin's `finish`, if it has one: its last batch, or nothing.
    pub fn finish(&self) -> Result<Option<RecordBatch>, String> {
        self.usable()?;
        let Some(finish) = self.plugin.finish else {
            return Ok(None);
        };
        let mut output = FFI_ArrowArray::empty();
        let mut output_schema = FFI_ArrowSchema::empty();
        let mut err = RunnerError::empty();
        // SAFETY: the ABI's finish; an output left empty (released) means "no batch".
        let status = unsafe { finish(self.state, &mut output, &mut output_schema, &mut err) };
        if status != OK {
            return Err(self.failed(&mut err, status));
        }
        if output.is_released() {
            return Ok(None);
        }
        import::import_batch(output, &output_schema)
            .map(Some)
            .map_err(|e| {
                format!(
                    "plugin {} returned an invalid batch from finish: {e}",
                    self.plugin.name
                )
            })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if !self.state.is_null() && !*self.poisoned.get_mut() {
            // SAFETY: made by this plugin's create, destroyed exactly once.
            unsafe { (self.plugin.destroy)(self.state) };
        }
    }
}
