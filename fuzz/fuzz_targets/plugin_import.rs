//! The plugin boundary: Arrow C Data Interface structs as a misbehaving plugin could hand them
//! back (any format, counts, lengths, offsets, NULL or unmapped pointers, missing children,
//! strings without their NUL), imported by the host's checked import. It must return a batch
//! or an error; never crash, and never read outside the memory the structs really own.
//!
//! Every buffer, string and pointer array is "fenced": placed at the very end of its own
//! mapping, followed by a page nobody may read, so a claim longer than what is there runs into
//! that page (which the host must notice) instead of into other heap memory (which no host
//! could tell from the plugin's own).
#![no_main]

use std::ffi::c_void;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use libfuzzer_sys::fuzz_target;
use runner::plugin::import::{RawArray, RawSchema};

/// Nothing to free: the target owns every allocation and frees it after the import.
unsafe extern "C" fn release_schema(schema: *mut RawSchema) {
    // SAFETY: the struct the host releases, ours.
    unsafe { (*schema).release = None };
}

unsafe extern "C" fn release_array(array: *mut RawArray) {
    // SAFETY: as above.
    unsafe { (*array).release = None };
}

const PAGE: usize = 4096;

/// Memory of one iteration: fenced mappings and boxed structs, freed at the end.
#[derive(Default)]
struct Arena {
    mappings: Vec<(*mut c_void, usize)>,
    schemas: Vec<*mut RawSchema>,
    arrays: Vec<*mut RawArray>,
}

impl Arena {
    /// `bytes` at the end of a fresh mapping whose next page cannot be read.
    fn fenced(&mut self, bytes: &[u8]) -> *const u8 {
        let pages = bytes.len().div_ceil(PAGE).max(1);
        let size = (pages + 1) * PAGE;
        // SAFETY: a new private anonymous mapping; the last page is made unreadable.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED);
            let fence = base.cast::<u8>().add(pages * PAGE);
            assert_eq!(libc::mprotect(fence.cast(), PAGE, libc::PROT_NONE), 0);
            self.mappings.push((base, size));
            let start = fence.sub(bytes.len());
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), start, bytes.len());
            start
        }
    }

    fn pointers<T>(&mut self, pointers: &[*const T]) -> *const *const T {
        let bytes: Vec<u8> = pointers
            .iter()
            .flat_map(|p| (*p as usize).to_ne_bytes())
            .collect();
        self.fenced(&bytes).cast()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for &(base, size) in &self.mappings {
            // SAFETY: mappings made by `fenced`, unmapped once.
            unsafe { libc::munmap(base, size) };
        }
        for &schema in &self.schemas {
            // SAFETY: boxed by `node`, freed once.
            drop(unsafe { Box::from_raw(schema) });
        }
        for &array in &self.arrays {
            // SAFETY: as above.
            drop(unsafe { Box::from_raw(array) });
        }
    }
}

/// Reads the fuzz input as choices.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *first
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken.to_vec()
    }

    /// A count: small ones mostly, and the edges.
    fn count(&mut self) -> i64 {
        match self.byte() {
            b @ 0..=199 => i64::from(b % 12),
            200..=209 => -1,
            210..=219 => -5,
            220..=229 => 1 << 31,
            230..=239 => 1 << 40,
            240..=247 => i64::MAX,
            _ => i64::from_le_bytes(self.bytes(8).try_into().unwrap_or([0; 8])),
        }
    }

    /// A pointer for a buffer: NULL, unmapped, or fenced bytes of a chosen length.
    fn buffer(&mut self, arena: &mut Arena) -> *const u8 {
        match self.byte() % 8 {
            0 => std::ptr::null(),
            1 => 64 as *const u8,
            _ => {
                let len = usize::from(self.byte()) * 4;
                let bytes = self.bytes(len);
                arena.fenced(&bytes)
            }
        }
    }
}

const FORMATS: &[&str] = &[
    "n", "b", "c", "C", "s", "i", "l", "L", "f", "g", "u", "U", "z", "Z", "+s", "+l", "+L",
    "tsu:UTC", "tdD", "tts", "w:4", "+w:2", "vu", "e", "d:10,2", "+m",
];

fn schema(choices: &mut Choices, arena: &mut Arena, depth: usize) -> *const RawSchema {
    let format = match choices.byte() {
        255 => {
            // Bytes without a NUL, or anything else.
            let len = usize::from(choices.byte() % 16);
            let bytes = choices.bytes(len);
            arena.fenced(&bytes)
        }
        254 => std::ptr::null(),
        b => {
            let text = format!("{}\0", FORMATS[usize::from(b) % FORMATS.len()]);
            arena.fenced(text.as_bytes())
        }
    };
    let wanted = if depth < 3 { choices.byte() % 4 } else { 0 };
    let children: Vec<*const RawSchema> = (0..wanted)
        .map(|_| schema(choices, arena, depth + 1))
        .collect();
    let claimed = match choices.byte() % 8 {
        0 => choices.count(),
        _ => children.len() as i64,
    };
    let node = Box::into_raw(Box::new(RawSchema {
        format: format.cast(),
        name: arena.fenced(b"c\0").cast(),
        metadata: std::ptr::null(),
        flags: 2,
        n_children: claimed,
        children: if children.is_empty() && choices.byte() % 2 == 0 {
            std::ptr::null()
        } else {
            arena.pointers(&children)
        },
        dictionary: std::ptr::null(),
        release: Some(release_schema),
        private_data: std::ptr::null_mut(),
    }));
    arena.schemas.push(node);
    node
}

fn array(choices: &mut Choices, arena: &mut Arena, depth: usize) -> *const RawArray {
    let n_buffers = usize::from(choices.byte() % 5);
    let buffers: Vec<*const u8> = (0..n_buffers).map(|_| choices.buffer(arena)).collect();
    let wanted = if depth < 3 { choices.byte() % 4 } else { 0 };
    let children: Vec<*const RawArray> = (0..wanted)
        .map(|_| match choices.byte() % 16 {
            0 => std::ptr::null(),
            _ => array(choices, arena, depth + 1),
        })
        .collect();
    let length = choices.count();
    let offset = match choices.byte() % 4 {
        0 => choices.count(),
        _ => 0,
    };
    let null_count = match choices.byte() % 4 {
        0 => choices.count(),
        1 => -1,
        _ => 0,
    };
    let node = Box::into_raw(Box::new(RawArray {
        length,
        null_count,
        offset,
        n_buffers: match choices.byte() % 8 {
            0 => choices.count(),
            _ => n_buffers as i64,
        },
        n_children: match choices.byte() % 8 {
            0 => choices.count(),
            _ => children.len() as i64,
        },
        buffers: if buffers.is_empty() {
            std::ptr::null()
        } else {
            arena.pointers(&buffers).cast()
        },
        children: if children.is_empty() {
            std::ptr::null()
        } else {
            arena.pointers(&children)
        },
        dictionary: std::ptr::null(),
        release: Some(release_array),
        private_data: std::ptr::null_mut(),
    }));
    arena.arrays.push(node);
    node
}

fuzz_target!(|data: &[u8]| {
    let mut arena = Arena::default();
    let mut choices = Choices(data);
    let schema_node = schema(&mut choices, &mut arena, 0);
    let array_node = array(&mut choices, &mut arena, 0);
    // SAFETY: both structs have the C Data Interface layout of arrow-rs's (checked by size);
    // the copies are what a plugin writes into the host's out-parameters. Their release
    // callbacks only mark them released.
    let (schema, array) = unsafe {
        assert_eq!(
            std::mem::size_of::<RawSchema>(),
            std::mem::size_of::<FFI_ArrowSchema>()
        );
        assert_eq!(
            std::mem::size_of::<RawArray>(),
            std::mem::size_of::<FFI_ArrowArray>()
        );
        (
            std::ptr::read(schema_node.cast::<FFI_ArrowSchema>()),
            std::ptr::read(array_node.cast::<FFI_ArrowArray>()),
        )
    };
    if let Ok(batch) = runner::plugin::import::import_batch(array, &schema) {
        // A batch that passed: every column is whole.
        for column in batch.columns() {
            assert!(column.to_data().validate_full().is_ok());
        }
    }
    drop(schema);
    drop(arena);
});
