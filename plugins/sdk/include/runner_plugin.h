/* runner transform-plugin ABI, version 1, for plugins written in C (or anything with a C FFI).
 * The Rust SDK (plugins/sdk/src/lib.rs) defines the same layout; see docs/plugins.md.
 *
 * A plugin exports exactly two symbols:
 *   uint32_t runner_plugin_abi_version(void);      returns RUNNER_PLUGIN_ABI_VERSION
 *   const RunnerPluginV1 *runner_plugin_v1(void);
 * Batches cross as Arrow C Data Interface struct arrays whose children are the columns.
 * transform: the input array moves to the plugin (take it and set in->release = NULL, or
 * release it when done); the output array and schema move to the host.
 * Status codes: 0 ok, 1 error (message in *err), 2 panic/abort caught (instance poisoned: the
 * host never calls that instance again, not even destroy, and the run fails).
 * Threads: transform may be called from several threads at once on the same state; create,
 * finish and destroy are never called concurrently with any other call on that state.
 * The host checks what it gets back (NULL table entries, counts, buffer lengths, unmapped
 * pointers; error messages are read up to 16 KiB) and fails the run with "plugin NAME returned
 * an invalid batch: ..." rather than crash; it cannot detect a pointer into memory that is
 * mapped but not the plugin's own, so such a plugin reads garbage rather than fails. */
#ifndef RUNNER_PLUGIN_H
#define RUNNER_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define RUNNER_PLUGIN_ABI_VERSION 1u
#define RUNNER_OK 0
#define RUNNER_ERROR 1
#define RUNNER_PANICKED 2

#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE
#define ARROW_FLAG_DICTIONARY_ORDERED 1
#define ARROW_FLAG_NULLABLE 2
#define ARROW_FLAG_MAP_KEYS_SORTED 4

struct ArrowSchema {
  const char *format;
  const char *name;
  const char *metadata;
  int64_t flags;
  int64_t n_children;
  struct ArrowSchema **children;
  struct ArrowSchema *dictionary;
  void (*release)(struct ArrowSchema *);
  void *private_data;
};

struct ArrowArray {
  int64_t length;
  int64_t null_count;
  int64_t offset;
  int64_t n_buffers;
  int64_t n_children;
  const void **buffers;
  struct ArrowArray **children;
  struct ArrowArray *dictionary;
  void (*release)(struct ArrowArray *);
  void *private_data;
};
#endif

typedef struct RunnerError {
  const uint8_t *msg; /* UTF-8, not NUL-terminated */
  size_t len;
  void (*release)(struct RunnerError *);
  void *private_data;
} RunnerError;

typedef struct RunnerPluginV1 {
  uint32_t abi_version; /* RUNNER_PLUGIN_ABI_VERSION */
  uint32_t struct_size; /* sizeof(RunnerPluginV1) */
  const char *name;
  const char *version;
  int32_t (*create)(const uint8_t *config_json, size_t len, uint32_t threads, void **state,
                    RunnerError *err);
  int32_t (*transform)(void *state, struct ArrowArray *in, const struct ArrowSchema *in_schema,
                       struct ArrowArray *out, struct ArrowSchema *out_schema, RunnerError *err);
  int32_t (*finish)(void *state, struct ArrowArray *out, struct ArrowSchema *out_schema,
                    RunnerError *err); /* may be NULL */
  void (*destroy)(void *state);
} RunnerPluginV1;

#endif
