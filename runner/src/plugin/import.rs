//! Importing a plugin's batch without trusting it. A plugin hands back Arrow C Data Interface
//! structs: raw pointers and lengths that arrow-rs's `from_ffi` takes on faith (a negative
//! length, a missing buffer or an offset past the data are panics or wild reads there). Before
//! arrow-rs sees them, this module walks the structs and checks every count against the type,
//! every pointer against the process's readable memory (`/proc/self/maps`, read once per batch:
//! a range that is unmapped or not readable, such as a guard page, is an error, not a SIGSEGV)
//! and every length against a cap; after import, `validate_full` checks offsets, UTF-8 and
//! child lengths, and the batch must be a struct array without null rows.
//!
//! What no host can check: a pointer into mapped memory that is not the plugin's buffer (reads
//! return garbage, which validation then judges like any other data). A plugin is code running
//! in the process; these checks turn its mistakes into errors, not its malice.

use std::ffi::{c_char, c_void, CStr};

use arrow_array::ffi::{from_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::{Array, RecordBatch, StructArray};
use arrow_schema::{DataType, Schema};

/// The C Data Interface's `ArrowSchema`, every pointer nullable (arrow-rs's struct has the
/// same layout but private fields and non-null assumptions). Public for the fuzz target, which
/// builds the structs a misbehaving plugin would.
#[repr(C)]
pub struct RawSchema {
    /// The type as an Arrow format string (`u` for UTF-8, `+s` for a struct, ...); must not be
    /// null.
    pub format: *const c_char,
    /// The field's name, NUL-terminated; may be null.
    pub name: *const c_char,
    /// Arrow's binary key-value metadata; may be null.
    pub metadata: *const c_char,
    /// `ARROW_FLAG_*` bits (dictionary ordered, nullable, map keys sorted).
    pub flags: i64,
    /// The number of entries in `children`.
    pub n_children: i64,
    /// The child schemas (a struct's fields, a list's item).
    pub children: *const *const RawSchema,
    /// The dictionary's value schema for a dictionary-encoded type; null otherwise.
    pub dictionary: *const RawSchema,
    /// Frees the schema; `None` marks a released schema.
    pub release: Option<unsafe extern "C" fn(*mut RawSchema)>,
    /// Owned by the producer's `release`.
    pub private_data: *mut c_void,
}

/// The C Data Interface's `ArrowArray`, likewise.
#[repr(C)]
pub struct RawArray {
    /// The number of elements, after `offset`.
    pub length: i64,
    /// The number of nulls, or -1 when not computed.
    pub null_count: i64,
    /// The first element's index in the buffers.
    pub offset: i64,
    /// The number of entries in `buffers`, fixed by the type.
    pub n_buffers: i64,
    /// The number of entries in `children`.
    pub n_children: i64,
    /// The buffers (validity first), each pointer possibly null where the type allows.
    pub buffers: *const *const c_void,
    /// The child arrays (a struct's columns, a list's values).
    pub children: *const *const RawArray,
    /// The dictionary's values for a dictionary-encoded array; null otherwise.
    pub dictionary: *const RawArray,
    /// Frees the array; `None` marks a released array.
    pub release: Option<unsafe extern "C" fn(*mut RawArray)>,
    /// Owned by the producer's `release`.
    pub private_data: *mut c_void,
}

const _: () = assert!(std::mem::size_of::<RawSchema>() == std::mem::size_of::<FFI_ArrowSchema>());
const _: () = assert!(std::mem::size_of::<RawArray>() == std::mem::size_of::<FFI_ArrowArray>());

/// Rows (elements, at any level) one array may claim: Arrow's 32-bit offsets address no more.
const MAX_ELEMENTS: i64 = i32::MAX as i64;
/// Bytes one batch's buffers may claim in all.
const MAX_BATCH_BYTES: usize = 16 << 30;
/// Nesting of columns (lists of structs of ...) a batch may have.
const MAX_DEPTH: usize = 32;
/// Children of one struct.
const MAX_CHILDREN: i64 = 100_000;
/// Bytes of a format string, a column name, or the metadata.
const MAX_STRING: usize = 64 << 10;

/// Whether the plugin gave back `input`'s own array as `output` without moving it (the
/// input's `release` left set, so both structs would free the same buffers): the commonest
/// mistake of a C pass-through, caught before it is a double free.
pub fn shares_array(input: &FFI_ArrowArray, output: &FFI_ArrowArray) -> bool {
    let (input, output) = (
        std::ptr::from_ref(input).cast::<RawArray>(),
        std::ptr::from_ref(output).cast::<RawArray>(),
    );
    // SAFETY: both point to live structs of the C layout (asserted equal in size above); only
    // their own fields are read.
    unsafe {
        (*input).release.is_some()
            && (*output).release.is_some()
            && !(*input).private_data.is_null()
            && (*input).private_data == (*output).private_data
    }
}

/// Likewise for the schema: `output` a shallow copy of the (still live) `input` schema.
pub fn shares_schema(input: &FFI_ArrowSchema, output: &FFI_ArrowSchema) -> bool {
    let (input, output) = (
        std::ptr::from_ref(input).cast::<RawSchema>(),
        std::ptr::from_ref(output).cast::<RawSchema>(),
    );
    // SAFETY: as in `shares_array`.
    unsafe {
        (*input).release.is_some()
            && (*output).release.is_some()
            && !(*input).private_data.is_null()
            && (*input).private_data == (*output).private_data
    }
}

/// Imports the batch a plugin returned in `array`/`schema`, or says what is wrong with it.
/// Takes ownership of `array` (released when the batch is dropped, or now on error).
pub fn import_batch(
    array: FFI_ArrowArray,
    schema: &FFI_ArrowSchema,
) -> Result<RecordBatch, String> {
    let raw_schema = std::ptr::from_ref(schema).cast::<RawSchema>();
    let raw_array = std::ptr::from_ref(&array).cast::<RawArray>();
    // SAFETY: both point to live structs of the C layout (asserted equal in size above); every
    // pointer inside them is checked before it is followed.
    unsafe {
        if (*raw_schema).release.is_none() {
            return Err("it set status 0 but returned no schema".into());
        }
        if (*raw_array).release.is_none() {
            return Err("it set status 0 but returned no array".into());
        }
        let memory = Memory::snapshot();
        let memory = &memory;
        let mut budget = MAX_BATCH_BYTES;
        check_schema(memory, raw_schema, 0)?;
        let data_type = DataType::try_from(schema).map_err(|e| e.to_string())?;
        if !matches!(data_type, DataType::Struct(_)) {
            return Err(format!(
                "it returned {data_type} instead of a batch (a struct array)"
            ));
        }
        check_array(memory, raw_array, &data_type, 0, &mut budget, "the batch")?;
    }
    // SAFETY: the walk above checked every count, pointer and buffer length `from_ffi` uses.
    let data = unsafe { from_ffi(array, schema) }.map_err(|e| e.to_string())?;
    data.validate_full().map_err(|e| e.to_string())?;
    let batch = StructArray::from(data);
    if batch.null_count() > 0 {
        return Err(format!(
            "{} of its {} rows are null (a batch's rows cannot be null)",
            batch.null_count(),
            batch.len()
        ));
    }
    let rows = batch.len();
    let (fields, columns, _) = batch.into_parts();
    if fields.is_empty() {
        return Err(format!(
            "it returned {rows} row(s) without a column; a batch needs at least one"
        ));
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
        .map_err(|e| e.to_string())
}

/// A plugin's error message: the readable part of its first `super::MAX_MESSAGE` bytes, up to
/// a NUL if any, decoded as UTF-8 (lossily) with control characters escaped.
pub(crate) fn message(msg: *const u8, len: usize) -> Option<String> {
    if msg.is_null() {
        return None;
    }
    let taken = Memory::snapshot().readable_len(msg, len.min(super::MAX_MESSAGE));
    if taken == 0 && len > 0 {
        return Some(format!(
            "(its message of {len} bytes points to memory that is not readable)"
        ));
    }
    // SAFETY: `taken` bytes from `msg` are readable; the plugin owns them until released.
    let bytes = unsafe { std::slice::from_raw_parts(msg, taken) };
    let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
    // One line: a plugin's line end would start a line that reads as runner's own.
    let mut text = one_line(&String::from_utf8_lossy(text));
    if taken < len {
        text.push_str(&format!(" [message cut: {len} bytes claimed]"));
    }
    Some(text)
}

/// Text from a plugin as one line, control characters (line ends and tabs too) escaped.
pub(crate) fn one_line(text: &str) -> String {
    crate::error::escape_controls(&text.replace('\n', "\\n").replace('\r', "\\r")).into_owned()
}

/// The process's readable memory at one moment: the readable ranges of `/proc/self/maps`
/// (sorted, adjacent ones joined), or, where that file cannot be read, `mincore`, which knows
/// mapped from unmapped but not a guard page from a readable one.
pub(crate) struct Memory {
    readable: Option<Vec<(usize, usize)>>,
}

impl Memory {
    pub(crate) fn snapshot() -> Memory {
        if cfg!(miri) {
            return Memory { readable: None };
        }
        let readable = std::fs::read_to_string("/proc/self/maps").ok().map(|maps| {
            let mut ranges: Vec<(usize, usize)> = Vec::new();
            for line in maps.lines() {
                let mut fields = line.split_ascii_whitespace();
                let (Some(span), Some(permissions)) = (fields.next(), fields.next()) else {
                    continue;
                };
                if !permissions.starts_with('r') {
                    continue;
                }
                let Some((start, end)) = span.split_once('-') else {
                    continue;
                };
                let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                ) else {
                    continue;
                };
                match ranges.last_mut() {
                    Some(last) if last.1 == start => last.1 = end,
                    _ => ranges.push((start, end)),
                }
            }
            ranges.sort_unstable();
            ranges
        });
        Memory { readable }
    }

    /// How many of the `len` bytes from `ptr` can be read, from the first on.
    pub(crate) fn readable_len(&self, ptr: *const u8, len: usize) -> usize {
        if cfg!(miri) {
            // Miri's memory is not the process's: it checks every read itself, exactly.
            return len;
        }
        let Some(ranges) = &self.readable else {
            return if mapped(ptr, len) { len } else { 0 };
        };
        let start = ptr as usize;
        let at = ranges.partition_point(|&(_, range_end)| range_end <= start);
        match ranges.get(at) {
            Some(&(range_start, range_end)) if range_start <= start && start != 0 => {
                len.min(range_end - start)
            }
            _ => 0,
        }
    }

    /// Whether `len` bytes from `ptr` can be read.
    pub(crate) fn readable(&self, ptr: *const u8, len: usize) -> bool {
        if cfg!(miri) {
            return !ptr.is_null() || len == 0;
        }
        if len == 0 {
            return true;
        }
        let start = ptr as usize;
        let Some(end) = start.checked_add(len) else {
            return false;
        };
        if start == 0 {
            return false;
        }
        let Some(ranges) = &self.readable else {
            return mapped(ptr, len);
        };
        let at = ranges.partition_point(|&(_, range_end)| range_end <= start);
        ranges
            .get(at)
            .is_some_and(|&(range_start, range_end)| range_start <= start && end <= range_end)
    }
}

/// Whether `len` bytes from `ptr` are mapped in this process (each page of the range).
fn mapped(ptr: *const u8, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    if ptr.is_null() {
        return false;
    }
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let Some(end) = (ptr as usize).checked_add(len) else {
        return false;
    };
    const CHUNK_PAGES: usize = 1 << 16;
    let mut pages = vec![0u8; CHUNK_PAGES];
    let mut at = ptr as usize & !(page - 1);
    while at < end {
        let span = (end - at).min(CHUNK_PAGES * page);
        // SAFETY: mincore reads the process's page tables only; `pages` has room for one byte
        // per page of `span` (at most CHUNK_PAGES), and `at` is page-aligned.
        let status = unsafe { libc::mincore(at as *mut c_void, span, pages.as_mut_ptr().cast()) };
        if status != 0 {
            return false;
        }
        at += span;
    }
    true
}

/// The struct at `ptr`, if its bytes are mapped.
///
/// # Safety
/// A mapped `T`-sized range must hold a `T` (any bit pattern of the C structs is valid).
unsafe fn read<'a, T>(memory: &Memory, ptr: *const T, what: &str) -> Result<&'a T, String> {
    if !memory.readable(ptr.cast(), std::mem::size_of::<T>()) {
        return Err(format!(
            "{what} points to memory that is not readable ({ptr:p})"
        ));
    }
    if !ptr.is_aligned() {
        return Err(format!("{what} is not aligned ({ptr:p})"));
    }
    // SAFETY: mapped and aligned; the caller vouches for the contents.
    Ok(unsafe { &*ptr })
}

/// A NUL-terminated string at `ptr` of at most `MAX_STRING` bytes, every byte checked mapped.
pub(crate) fn c_string<'a>(
    memory: &Memory,
    ptr: *const c_char,
    what: &str,
) -> Result<&'a CStr, String> {
    if ptr.is_null() {
        return Err(format!("{what} is NULL"));
    }
    let mut len = 0;
    loop {
        // SAFETY: `ptr + len` is checked mapped just before it is read.
        let at = unsafe { ptr.add(len) };
        if !memory.readable(at.cast(), 1) {
            return Err(format!("{what} points to memory that is not readable"));
        }
        // SAFETY: mapped, one byte.
        if unsafe { *at } == 0 {
            break;
        }
        len += 1;
        if len > MAX_STRING {
            return Err(format!("{what} is longer than {MAX_STRING} bytes"));
        }
    }
    // SAFETY: NUL-terminated within `len + 1` mapped bytes.
    Ok(unsafe { CStr::from_ptr(ptr) })
}

/// Checks a schema node and its children: what `DataType::try_from` reads.
///
/// # Safety
/// `schema` must point to a readable `RawSchema`.
unsafe fn check_schema(
    memory: &Memory,
    schema: *const RawSchema,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("its schema nests deeper than {MAX_DEPTH} levels"));
    }
    // SAFETY: the caller's promise (the root) or checked by `read` (children).
    let node = unsafe { &*schema };
    if node.release.is_none() {
        return Err("its schema contains a released node".into());
    }
    // arrow-rs panics on a format or name that is not UTF-8 (found by the plugin_import
    // fuzz target within 81 runs).
    let format = c_string(memory, node.format, "a schema's format")?
        .to_str()
        .map_err(|_| "a schema's format is not UTF-8".to_owned())?;
    // ... and on a nested format without the children it names (found next, within 523):
    // lists have one child, a struct any number, every other accepted type none.
    let children = match format {
        "+l" | "+L" => Some(1),
        "+s" => None,
        nested if nested.starts_with('+') => {
            return Err(format!(
            "it returned a column of format `{nested}`, which runner does not accept from plugins"
        ))
        }
        _ => Some(0),
    };
    if let Some(expected) = children.filter(|&n| n != node.n_children) {
        return Err(format!(
            "its schema has format `{format}` with {} children (it takes {expected})",
            node.n_children
        ));
    }
    if !node.name.is_null() {
        c_string(memory, node.name, "a column name")?
            .to_str()
            .map_err(|_| "a column name is not UTF-8".to_owned())?;
    }
    if !node.metadata.is_null() {
        check_metadata(memory, node.metadata.cast())?;
    }
    if !node.dictionary.is_null() {
        return Err(
            "it returned a dictionary-encoded column, which runner does not accept from plugins"
                .into(),
        );
    }
    if !(0..=MAX_CHILDREN).contains(&node.n_children) {
        return Err(format!("its schema claims {} children", node.n_children));
    }
    let n = node.n_children as usize;
    if n > 0 {
        if !memory.readable(
            node.children.cast(),
            n * std::mem::size_of::<*const RawSchema>(),
        ) {
            return Err("its schema's children pointer is not readable".into());
        }
        for i in 0..n {
            // SAFETY: the pointer array was checked mapped for `n` entries.
            let child = unsafe { *node.children.add(i) };
            // SAFETY: any bytes form a RawSchema.
            unsafe { read(memory, child, "a schema child")? };
            // SAFETY: checked readable just above.
            unsafe { check_schema(memory, child, depth + 1)? };
        }
    }
    Ok(())
}

/// Arrow's metadata encoding: i32 pair count, then (i32 length, bytes) for each key and value.
fn check_metadata(memory: &Memory, at: *const u8) -> Result<(), String> {
    let mut offset = 0usize;
    let int = |offset: &mut usize| -> Result<i32, String> {
        // SAFETY: checked mapped before the unaligned read.
        let ptr = unsafe { at.add(*offset) };
        if !memory.readable(ptr, 4) {
            return Err("its schema's metadata points to memory that is not readable".to_owned());
        }
        *offset += 4;
        // SAFETY: four mapped bytes.
        Ok(unsafe { ptr.cast::<i32>().read_unaligned() })
    };
    let pairs = int(&mut offset)?;
    if !(0..=1024).contains(&pairs) {
        return Err(format!("its schema's metadata claims {pairs} entries"));
    }
    for _ in 0..pairs * 2 {
        let len = int(&mut offset)?;
        if !(0..=MAX_STRING as i32).contains(&len) {
            return Err(format!(
                "its schema's metadata claims an entry of {len} bytes"
            ));
        }
        // SAFETY: the range is checked before anything reads it.
        if !memory.readable(unsafe { at.add(offset) }, len as usize) {
            return Err("its schema's metadata points to memory that is not readable".into());
        }
        offset += len as usize;
    }
    Ok(())
}

/// The buffers (C Data Interface order, validity first) an array of `data_type` has, and its
/// children's types; `None` for types runner does not take from plugins.
fn layout(data_type: &DataType) -> Option<(Vec<Buffer>, Vec<&DataType>)> {
    use DataType::*;
    Some(match data_type {
        Null => (vec![], vec![]),
        Boolean => (vec![Buffer::Validity, Buffer::Bits], vec![]),
        Utf8 | Binary => (
            vec![Buffer::Validity, Buffer::Offsets(4), Buffer::Data],
            vec![],
        ),
        LargeUtf8 | LargeBinary => (
            vec![Buffer::Validity, Buffer::Offsets(8), Buffer::Data],
            vec![],
        ),
        List(field) => (
            vec![Buffer::Validity, Buffer::Offsets(4)],
            vec![field.data_type()],
        ),
        LargeList(field) => (
            vec![Buffer::Validity, Buffer::Offsets(8)],
            vec![field.data_type()],
        ),
        Struct(fields) => (
            vec![Buffer::Validity],
            fields.iter().map(|f| f.data_type()).collect(),
        ),
        other => match other.primitive_width() {
            Some(width) => (vec![Buffer::Validity, Buffer::Fixed(width)], vec![]),
            None => return None,
        },
    })
}

/// One buffer of an array, by what its length follows from.
#[derive(Clone, Copy)]
enum Buffer {
    /// One bit per element, optional (NULL when nothing is null).
    Validity,
    /// One bit per element.
    Bits,
    /// `width` bytes per element.
    Fixed(usize),
    /// `length + 1` offsets of this many bytes.
    Offsets(usize),
    /// Bytes up to the last offset.
    Data,
}

/// Checks an array node against its type, then its children: every count `from_ffi` trusts
/// and every buffer range it will read.
///
/// # Safety
/// `array` must point to a readable `RawArray`.
unsafe fn check_array(
    memory: &Memory,
    array: *const RawArray,
    data_type: &DataType,
    depth: usize,
    budget: &mut usize,
    what: &str,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("its array nests deeper than {MAX_DEPTH} levels"));
    }
    // SAFETY: the caller's promise.
    let node = unsafe { &*array };
    let (buffers, children) = layout(data_type).ok_or_else(|| {
        format!("{what} is of type {data_type}, which runner does not accept from plugins")
    })?;
    if node.release.is_none() {
        return Err(format!("{what} is a released array"));
    }
    if node.length < 0 || node.offset < 0 {
        return Err(format!(
            "{what} has length {} and offset {}",
            node.length, node.offset
        ));
    }
    let elements = node
        .length
        .checked_add(node.offset)
        .filter(|&e| e <= MAX_ELEMENTS)
        .ok_or_else(|| {
            format!(
                "{what} claims {} rows from offset {} (at most {MAX_ELEMENTS})",
                node.length, node.offset
            )
        })? as usize;
    if node.null_count < -1 || node.null_count > node.length {
        return Err(format!(
            "{what} claims {} nulls in {} rows",
            node.null_count, node.length
        ));
    }
    if node.n_buffers != buffers.len() as i64 {
        return Err(format!(
            "{what} ({data_type}) has {} buffers instead of {}",
            node.n_buffers,
            buffers.len()
        ));
    }
    if node.n_children != children.len() as i64 {
        return Err(format!(
            "{what} ({data_type}) has {} children instead of {}",
            node.n_children,
            children.len()
        ));
    }
    if !node.dictionary.is_null() {
        return Err(format!("{what} has a dictionary its type does not declare"));
    }
    if !buffers.is_empty() && !memory.readable(node.buffers.cast(), buffers.len() * 8) {
        return Err(format!("{what}'s buffer pointers are not readable"));
    }
    let mut last_offset = 0usize;
    for (i, kind) in buffers.iter().enumerate() {
        // SAFETY: the pointer array was checked mapped for every buffer.
        let ptr = unsafe { *node.buffers.add(i) }.cast::<u8>();
        let bytes = match *kind {
            Buffer::Validity | Buffer::Bits => elements.div_ceil(8),
            Buffer::Fixed(width) => elements * width,
            Buffer::Offsets(width) => (elements + 1) * width,
            Buffer::Data => last_offset,
        };
        let optional = matches!(kind, Buffer::Validity) || bytes == 0;
        if ptr.is_null() {
            if optional && !(matches!(kind, Buffer::Offsets(_)) && elements > 0) {
                continue;
            }
            return Err(format!(
                "{what}'s buffer {i} is NULL but must hold {bytes} bytes"
            ));
        }
        *budget = budget.checked_sub(bytes).ok_or_else(|| {
            format!("the batch's buffers claim more than {MAX_BATCH_BYTES} bytes")
        })?;
        if !memory.readable(ptr, bytes) {
            return Err(format!(
                "{what}'s buffer {i} claims {bytes} bytes at {ptr:p}, which are not readable"
            ));
        }
        if let Buffer::Offsets(width) = *kind {
            // SAFETY: the offsets were checked mapped, `elements + 1` of `width` bytes.
            let offset_at = |index: usize| unsafe {
                if width == 4 {
                    i64::from(ptr.add(index * 4).cast::<i32>().read_unaligned())
                } else {
                    ptr.add(index * 8).cast::<i64>().read_unaligned()
                }
            };
            let (first, last) = (offset_at(node.offset as usize), offset_at(elements));
            if first < 0 || last < first {
                return Err(format!("{what}'s offsets run from {first} to {last}"));
            }
            last_offset =
                usize::try_from(last).map_err(|_| format!("{what}'s last offset is {last}"))?;
        }
    }
    if !children.is_empty() {
        if !memory.readable(node.children.cast(), children.len() * 8) {
            return Err(format!("{what}'s children pointer is not readable"));
        }
        for (i, child_type) in children.into_iter().enumerate() {
            // SAFETY: the pointer array was checked mapped.
            let child = unsafe { *node.children.add(i) };
            let label = format!("{what}'s child {i}");
            // SAFETY: any bytes form a RawArray.
            unsafe { read(memory, child, &label)? };
            // SAFETY: checked readable just above.
            unsafe { check_array(memory, child, child_type, depth + 1, budget, &label)? };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use std::sync::Arc;

    fn exported(batch: RecordBatch) -> (FFI_ArrowArray, FFI_ArrowSchema) {
        let data = StructArray::from(batch).into_data();
        let schema = FFI_ArrowSchema::try_from(data.data_type()).unwrap();
        (FFI_ArrowArray::new(&data), schema)
    }

    fn sample() -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "word",
                Arc::new(StringArray::from(vec![Some("a"), None, Some("ccc")])) as _,
            ),
            ("n", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
        ])
        .unwrap()
    }

    #[test]
    fn a_valid_batch_comes_back_unchanged() {
        let (array, schema) = exported(sample());
        assert_eq!(import_batch(array, &schema).unwrap(), sample());
    }

    #[test]
    fn rows_without_a_column_are_an_error_that_says_so() {
        let empty = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            Vec::new(),
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(3)),
        )
        .unwrap();
        let data = StructArray::from(empty).into_data();
        let schema = FFI_ArrowSchema::try_from(data.data_type()).unwrap();
        let err = import_batch(FFI_ArrowArray::new(&data), &schema).unwrap_err();
        assert_eq!(
            err,
            "it returned 3 row(s) without a column; a batch needs at least one"
        );
    }

    #[test]
    fn text_from_a_plugin_is_one_line() {
        assert_eq!(
            one_line("a\nerror: forged\r\x1b"),
            "a\\nerror: forged\\r\\u{1b}"
        );
    }

    /// Exports `sample()`, lets `damage` change the raw structs, and imports the result.
    fn damaged(damage: impl FnOnce(&mut RawArray)) -> String {
        let (mut array, schema) = exported(sample());
        // SAFETY: same layout (asserted above); the test changes plain fields only.
        damage(unsafe { &mut *std::ptr::from_mut(&mut array).cast::<RawArray>() });
        import_batch(array, &schema).unwrap_err()
    }

    #[test]
    fn counts_that_disagree_with_the_type_are_errors() {
        assert!(damaged(|a| a.length = -5).contains("length -5"));
        assert!(damaged(|a| a.length = 1 << 62).contains("claims"));
        assert!(damaged(|a| a.n_buffers = 0).contains("0 buffers instead of 1"));
        assert!(damaged(|a| a.n_children = 1).contains("1 children instead of 2"));
        assert!(damaged(|a| a.null_count = 7).contains("7 nulls in 3 rows"));
        assert!(
            damaged(|a| a.length = 4).contains("child"),
            "a struct longer than its children"
        );
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri's memory is not the process's map")]
    fn pointers_to_unmapped_memory_are_errors() {
        let message = damaged(|a| {
            // SAFETY: the exported batch's children pointers are valid for two entries.
            let child = unsafe { &mut *(*a.children).cast_mut() };
            // SAFETY: a utf8 child has 3 buffers; point its offsets at page 1 (never mapped).
            unsafe { *child.buffers.cast_mut().add(1) = 4096 as *const c_void };
        });
        assert!(message.contains("not readable"), "{message}");
    }

    /// Found by the `plugin_import` fuzz target: a format of bytes that are not UTF-8 made
    /// arrow-rs panic while reading the schema.
    #[test]
    fn a_format_or_name_that_is_not_utf8_is_an_error() {
        for (format, name) in [
            (&b"\xff\0"[..], &b"c\0"[..]),
            (&b"+s\0"[..], &b"\xc3\0"[..]),
        ] {
            let (array, mut schema) = exported(sample());
            // SAFETY: same layout; the pointers are to static bytes that outlive the call.
            let raw = unsafe { &mut *std::ptr::from_mut(&mut schema).cast::<RawSchema>() };
            let (saved_format, saved_name) = (raw.format, raw.name);
            raw.format = format.as_ptr().cast();
            raw.name = name.as_ptr().cast();
            let message = import_batch(array, &schema).unwrap_err();
            assert!(message.contains("is not UTF-8"), "{message}");
            // Give the exporter's release callback its own strings back.
            // SAFETY: as above.
            let raw = unsafe { &mut *std::ptr::from_mut(&mut schema).cast::<RawSchema>() };
            raw.format = saved_format;
            raw.name = saved_name;
        }
    }

    /// Found by the `plugin_import` fuzz target: a list format without its child schema made
    /// arrow-rs panic on an assertion.
    #[test]
    fn a_nested_format_without_its_children_is_an_error() {
        let (array, mut schema) = exported(sample());
        // SAFETY: same layout; only the count changes, and is put back before the release.
        let raw = unsafe { &mut *std::ptr::from_mut(&mut schema).cast::<RawSchema>() };
        let saved = (raw.format, raw.n_children);
        raw.format = c"+l".as_ptr();
        raw.n_children = 0;
        let message = import_batch(array, &schema).unwrap_err();
        assert!(
            message.contains("format `+l` with 0 children (it takes 1)"),
            "{message}"
        );
        // SAFETY: as above.
        let raw = unsafe { &mut *std::ptr::from_mut(&mut schema).cast::<RawSchema>() };
        (raw.format, raw.n_children) = saved;
    }

    #[test]
    fn a_released_output_is_an_error() {
        let message = import_batch(FFI_ArrowArray::empty(), &FFI_ArrowSchema::empty()).unwrap_err();
        assert!(message.contains("no schema"), "{message}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri's memory is not the process's map")]
    fn readable_memory_is_the_stack_not_page_zero_nor_a_guard_page() {
        let local = [0u8; 64];
        let memory = Memory::snapshot();
        assert!(
            memory.readable.is_some(),
            "/proc/self/maps is readable here"
        );
        assert!(memory.readable(local.as_ptr(), 64));
        assert!(mapped(local.as_ptr(), 64));
        assert!(!memory.readable(16 as *const u8, 8));
        assert!(!mapped(16 as *const u8, 8));
        assert!(!memory.readable((usize::MAX - 4) as *const u8, 16));
        // A mapped page nobody may read: mincore calls it mapped, the snapshot knows better.
        // SAFETY: a fresh anonymous mapping of one page, unmapped below.
        unsafe {
            let page = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(page, libc::MAP_FAILED);
            assert!(mapped(page.cast(), 4096));
            assert!(!Memory::snapshot().readable(page.cast(), 1));
            libc::munmap(page, 4096);
        }
    }
}
