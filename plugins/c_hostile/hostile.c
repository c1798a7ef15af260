/* A runner plugin in C that misbehaves on purpose, for the host's tests: it hands back invalid
 * Arrow data, bogus errors or an incomplete function table, and the host must turn each into an
 * error (never a panic or a crash). Build it like c_passthrough:
 *   cc -shared -fPIC -O2 -D_GNU_SOURCE -Wall -Werror -I plugins/sdk/include \
 *      -o libc_hostile.so plugins/c_hostile/hostile.c
 * adding -DHOSTILE_NULL_CREATE, -DHOSTILE_NULL_TRANSFORM or -DHOSTILE_SHORT_TABLE for a table
 * whose create or transform is NULL, or whose struct_size is 8.
 *
 * The config picks the fault: {"fault":"NAME"} (compact JSON, as the host re-encodes it). Batches
 * with no rows (the validation probe) pass through unchanged; batches with rows get the fault.
 * With "in":"finish" every batch passes through and finish returns the fault, built for 3 rows;
 * otherwise finish returns no batch. No "fault" key: a pass-through; an unknown fault: create
 * fails. The faults (unless said, a struct array with one utf8 column "word" of "x" strings):
 *   struct-longer-than-child   struct length n+5, child length n
 *   null-row                   row 0 of the struct is null (validity bitmap, null_count 1)
 *   offsets-past-data          last utf8 offset INT32_MAX, data buffer 8 bytes
 *   large-offsets-past-data    the same as large utf8 ("U", int64 offsets): last offset 1<<40
 *   offsets-decreasing         utf8 offsets [0,5,2,3,...] (n = 1: [5,2]), data buffer 16 bytes
 *   child-longer-than-buffers  utf8 child claims 1<<40 rows; its offsets hold n+1 entries
 *   untouched                  returns ok without writing the output at all
 *   negative-length            struct length -5
 *   huge-length                struct length 1<<62
 *   null-format                the top-level schema's format is NULL (data otherwise valid)
 *   missing-buffers            utf8 child with n_buffers = 1 (a 1-entry buffers array)
 *   null-child-pointer         struct n_children = 1 with children[0] == NULL
 *   huge-error                 an error whose 64-byte static message claims len 1<<40
 *   control-error              the error "bad \x1b[31mred\x1b[0m thing\nerror: forged"
 *   wrong-type                 a top-level int64 array ("l") instead of a struct
 *   dictionary                 the utf8 child array has a dictionary; its schema has none
 *   status-error               returns status 7 (no such status) without a message
 *   copied-input               the input array copied as the output, its release left set
 *   shared-schema              the input array moved, but the input schema shallow-copied
 * and, for every batch, the probe included:
 *   int32-column               the column "word" as int32 (7 in every row)
 *   duplicate-names            two utf8 columns both named "word"
 * With "hang":"create" or "hang":"finish", that call never returns (for `timeout`).
 * Everything handed out is owned here and freed by its own release callback. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runner_plugin.h"

enum Fault {
  NONE,
  STRUCT_LONGER_THAN_CHILD,
  NULL_ROW,
  OFFSETS_PAST_DATA,
  LARGE_OFFSETS_PAST_DATA,
  OFFSETS_DECREASING,
  CHILD_LONGER_THAN_BUFFERS,
  UNTOUCHED,
  NEGATIVE_LENGTH,
  HUGE_LENGTH,
  NULL_FORMAT,
  MISSING_BUFFERS,
  NULL_CHILD_POINTER,
  HUGE_ERROR,
  CONTROL_ERROR,
  WRONG_TYPE,
  DICTIONARY,
  STATUS_ERROR,
  COPIED_INPUT,
  SHARED_SCHEMA,
  INT32_COLUMN,
  DUPLICATE_NAMES,
  FAULT_COUNT
};

static const char *const FAULT_NAMES[FAULT_COUNT] = {
    "",
    "struct-longer-than-child",
    "null-row",
    "offsets-past-data",
    "large-offsets-past-data",
    "offsets-decreasing",
    "child-longer-than-buffers",
    "untouched",
    "negative-length",
    "huge-length",
    "null-format",
    "missing-buffers",
    "null-child-pointer",
    "huge-error",
    "control-error",
    "wrong-type",
    "dictionary",
    "status-error",
    "copied-input",
    "shared-schema",
    "int32-column",
    "duplicate-names",
};

typedef struct State {
  enum Fault fault;
  int in_finish; /* "in":"finish": the fault comes from finish, transform passes through */
  int hang_finish; /* "hang":"finish": finish never returns */
} State;

/* ---- errors ---- */

static void release_static_error(RunnerError *err) { err->release = NULL; }

static int32_t fail_len(RunnerError *err, const char *message, size_t len) {
  err->msg = (const uint8_t *)message;
  err->len = len;
  err->release = release_static_error;
  err->private_data = NULL;
  return RUNNER_ERROR;
}

static int32_t fail(RunnerError *err, const char *message) {
  return fail_len(err, message, strlen(message));
}

/* 64 bytes in all (the rest are NULs); huge-error says it is a terabyte long. */
static const char HUGE_MESSAGE[64] = "this message is 64 bytes long but its length says a terabyte";

/* ---- pass-through (as in c_passthrough) ---- */

static void release_copied_schema(struct ArrowSchema *schema) {
  for (int64_t i = 0; i < schema->n_children; i++) {
    struct ArrowSchema *child = schema->children[i];
    if (child) {
      if (child->release) child->release(child);
      free(child);
    }
  }
  free(schema->children);
  free((void *)schema->format);
  free((void *)schema->name);
  schema->release = NULL;
}

/* The output schema must be owned by the plugin: a deep copy of the input's (no metadata). */
static int copy_schema(const struct ArrowSchema *from, struct ArrowSchema *to) {
  memset(to, 0, sizeof *to);
  to->release = release_copied_schema;
  to->format = strdup(from->format);
  to->name = from->name ? strdup(from->name) : NULL;
  to->flags = from->flags;
  if (!to->format || (from->name && !to->name)) return -1;
  if (from->n_children > 0) {
    to->children = calloc((size_t)from->n_children, sizeof(struct ArrowSchema *));
    if (!to->children) return -1;
    to->n_children = from->n_children;
    for (int64_t i = 0; i < from->n_children; i++) {
      to->children[i] = malloc(sizeof(struct ArrowSchema));
      if (!to->children[i]) return -1;
      if (copy_schema(from->children[i], to->children[i]) != 0) return -1;
    }
  }
  return from->dictionary ? -1 : 0; /* dictionaries are not supported here */
}

static int32_t pass_through(struct ArrowArray *in, const struct ArrowSchema *in_schema,
                            struct ArrowArray *out, struct ArrowSchema *out_schema,
                            RunnerError *err) {
  if (copy_schema(in_schema, out_schema) != 0) {
    if (out_schema->release) out_schema->release(out_schema);
    return fail(err, "cannot copy the schema");
  }
#ifdef HOSTILE_FLIP_NULLABLE
  /* Batches with rows (not the empty probe) say their columns may not hold nulls: a flag
   * runner does not hold against a plugin. */
  if (in->length > 0)
    for (int64_t i = 0; i < out_schema->n_children; i++)
      out_schema->children[i]->flags &= ~(int64_t)ARROW_FLAG_NULLABLE;
#endif
  *out = *in;         /* move the batch: its release callback stays the host's */
  in->release = NULL; /* the host's struct is now empty */
  return RUNNER_OK;
}

/* ---- owned Arrow structs for the faults ----
 * Every array and schema built here has an Owned list as private_data: the memory it (and the
 * structs of its children and dictionary) lives in. Its release first releases the children and
 * the dictionary that still have a release callback, then frees the list. Release is set as soon
 * as a struct is initialised, so a half-built one can be released too. */

#define MAX_OWNED 8

typedef struct Owned {
  int n;
  void *ptr[MAX_OWNED];
} Owned;

typedef struct Build {
  int failed; /* an allocation failed */
} Build;

static void *own(Build *b, Owned *o, size_t size) {
  void *p = (o && o->n < MAX_OWNED) ? calloc(1, size ? size : 1) : NULL;
  if (!p) {
    b->failed = 1;
    return NULL;
  }
  o->ptr[o->n++] = p;
  return p;
}

static void free_owned(Owned *o) {
  if (!o) return;
  for (int i = 0; i < o->n; i++) free(o->ptr[i]);
  free(o);
}

static void release_array(struct ArrowArray *a) {
  for (int64_t i = 0; a->children && i < a->n_children; i++) {
    struct ArrowArray *child = a->children[i];
    if (child && child->release) child->release(child);
  }
  if (a->dictionary && a->dictionary->release) a->dictionary->release(a->dictionary);
  free_owned(a->private_data);
  a->private_data = NULL;
  a->release = NULL;
}

static void release_schema(struct ArrowSchema *s) {
  for (int64_t i = 0; s->children && i < s->n_children; i++) {
    struct ArrowSchema *child = s->children[i];
    if (child && child->release) child->release(child);
  }
  if (s->dictionary && s->dictionary->release) s->dictionary->release(s->dictionary);
  free_owned(s->private_data);
  s->private_data = NULL;
  s->release = NULL;
}

/* Initialises *a (length, n_buffers NULL buffers, n_children NULL children); its Owned list. */
static Owned *init_array(Build *b, struct ArrowArray *a, int64_t length, int64_t n_buffers,
                         int64_t n_children) {
  memset(a, 0, sizeof *a);
  Owned *o = calloc(1, sizeof *o);
  if (!o) {
    b->failed = 1;
    return NULL;
  }
  a->release = release_array;
  a->private_data = o;
  a->length = length;
  a->buffers = own(b, o, (size_t)n_buffers * sizeof(void *));
  if (a->buffers) a->n_buffers = n_buffers;
  if (n_children > 0) {
    a->children = own(b, o, (size_t)n_children * sizeof(struct ArrowArray *));
    if (a->children) a->n_children = n_children;
  }
  return o;
}

/* A struct array of `length` rows with one child, whose struct (owned by the parent) it returns
 * zeroed for the caller to fill. */
static struct ArrowArray *struct_array(Build *b, struct ArrowArray *a, int64_t length) {
  Owned *o = init_array(b, a, length, 1, 1);
  if (!o || !a->children) return NULL;
  a->children[0] = own(b, o, sizeof(struct ArrowArray));
  return a->children[0];
}

/* A utf8 ("u", or with `large` "U") array of n strings; offsets[i] = min(i, data_len), so with
 * data_len = n every string is "x". Returns the offsets (int32_t or int64_t) for the caller to
 * spoil, or NULL if an allocation failed. */
static void *utf8_array(Build *b, struct ArrowArray *a, int64_t n, int64_t data_len, int large) {
  Owned *o = init_array(b, a, n, 3, 0);
  if (!o || !a->buffers) return NULL;
  void *offsets = own(b, o, (size_t)(n + 1) * (large ? sizeof(int64_t) : sizeof(int32_t)));
  char *data = own(b, o, (size_t)data_len);
  if (!offsets || !data) return NULL;
  memset(data, 'x', (size_t)data_len);
  for (int64_t i = 0; i <= n; i++) {
    int64_t at = i < data_len ? i : data_len;
    if (large)
      ((int64_t *)offsets)[i] = at;
    else
      ((int32_t *)offsets)[i] = (int32_t)at;
  }
  a->buffers[0] = NULL; /* no validity bitmap: no nulls */
  a->buffers[1] = offsets;
  a->buffers[2] = data;
  return offsets;
}

/* A schema "+s" (top_format, unless wrong-type) with one child "word" of child_format. */
static void init_schema(Build *b, struct ArrowSchema *s, const char *format, const char *name,
                        int64_t flags, int64_t n_children) {
  memset(s, 0, sizeof *s);
  Owned *o = calloc(1, sizeof *o);
  if (!o) {
    b->failed = 1;
    return;
  }
  s->release = release_schema;
  s->private_data = o;
  s->format = format; /* static strings: they live as long as the library */
  s->name = name;
  s->flags = flags;
  if (n_children > 0) {
    s->children = own(b, o, (size_t)n_children * sizeof(struct ArrowSchema *));
    if (!s->children) return;
    s->n_children = n_children;
    for (int64_t i = 0; i < n_children; i++) s->children[i] = own(b, o, sizeof(struct ArrowSchema));
  }
}

static void word_schema(Build *b, struct ArrowSchema *s, const char *top_format, int64_t top_flags,
                        const char *child_format, int64_t child_flags) {
  init_schema(b, s, top_format, NULL, top_flags, 1);
  if (s->n_children == 1 && s->children[0])
    init_schema(b, s->children[0], child_format, "word", child_flags, 0);
}

/* The flags of the input's "word" column, so the faulty schema matches the probe's. */
static int64_t word_flags(const struct ArrowSchema *in_schema) {
  for (int64_t i = 0; in_schema && i < in_schema->n_children; i++) {
    const struct ArrowSchema *child = in_schema->children[i];
    if (child && child->name && strcmp(child->name, "word") == 0) return child->flags;
  }
  return ARROW_FLAG_NULLABLE;
}

/* Builds the faulty output for a batch of n > 0 rows. */
static int32_t misbehave(enum Fault fault, int64_t n, int64_t flags, struct ArrowArray *out,
                         struct ArrowSchema *out_schema, RunnerError *err) {
  static const char CONTROL_MESSAGE[] = "bad \x1b[31mred\x1b[0m thing\nerror: forged";
  struct ArrowArray a;
  struct ArrowSchema s;
  struct ArrowArray *child;
  Build b = {0};
  memset(&a, 0, sizeof a);
  memset(&s, 0, sizeof s);

  switch (fault) {
    case UNTOUCHED:
      return RUNNER_OK;
    case STATUS_ERROR:
      return 7; /* no such status, and no message */
    case HUGE_ERROR:
      return fail_len(err, HUGE_MESSAGE, (size_t)1 << 40);
    case CONTROL_ERROR:
      return fail(err, CONTROL_MESSAGE);
    case WRONG_TYPE: {
      Owned *o = init_array(&b, &a, n, 2, 0);
      int64_t *values = own(&b, o, (size_t)n * sizeof(int64_t));
      if (values) {
        for (int64_t i = 0; i < n; i++) values[i] = 1;
        a.buffers[0] = NULL;
        a.buffers[1] = values;
      }
      init_schema(&b, &s, "l", "word", flags, 0);
      break;
    }
    case STRUCT_LONGER_THAN_CHILD:
      if ((child = struct_array(&b, &a, n + 5))) utf8_array(&b, child, n, n, 0);
      word_schema(&b, &s, "+s", 0, "u", flags);
      break;
    case NULL_ROW:
      if ((child = struct_array(&b, &a, n))) {
        uint8_t *validity = own(&b, a.private_data, (size_t)(n + 7) / 8);
        if (validity) {
          memset(validity, 0xff, (size_t)(n + 7) / 8);
          validity[0] &= (uint8_t)~1u; /* row 0 is null */
          a.buffers[0] = validity;
          a.null_count = 1;
        }
        utf8_array(&b, child, n, n, 0);
      }
      word_schema(&b, &s, "+s", ARROW_FLAG_NULLABLE, "u", flags);
      break;
    case OFFSETS_PAST_DATA:
      if ((child = struct_array(&b, &a, n))) {
        int32_t *offsets = utf8_array(&b, child, n, 8, 0);
        if (offsets) offsets[n] = INT32_MAX; /* 2 GiB: the most an int32 offset says */
      }
      word_schema(&b, &s, "+s", 0, "u", flags);
      break;
    case LARGE_OFFSETS_PAST_DATA:
      if ((child = struct_array(&b, &a, n))) {
        int64_t *offsets = utf8_array(&b, child, n, 8, 1);
        if (offsets) offsets[n] = (int64_t)1 << 40; /* a terabyte */
      }
      word_schema(&b, &s, "+s", 0, "U", flags);
      break;
    case OFFSETS_DECREASING:
      if ((child = struct_array(&b, &a, n))) {
        int32_t *offsets = utf8_array(&b, child, n, 16, 0);
        if (offsets && n == 1) {
          offsets[0] = 5;
          offsets[1] = 2;
        } else if (offsets) {
          offsets[1] = 5; /* [0, 5, 2, 3, 4, ..., 16, 16] */
          offsets[2] = 2;
        }
      }
      word_schema(&b, &s, "+s", 0, "u", flags);
      break;
    case CHILD_LONGER_THAN_BUFFERS:
      if ((child = struct_array(&b, &a, n)) && utf8_array(&b, child, n, n, 0))
        child->length = (int64_t)1 << 40;
      word_schema(&b, &s, "+s", 0, "u", flags);
      break;
    case NEGATIVE_LENGTH:
      if ((child = struct_array(&b, &a, -5))) utf8_array(&b, child, n, n, 0);
      word_schema(&b, &s, "+s", 0, "u", flags);
      break;
    case HUGE_LENGTH:
      if ((child = struct_array(&b, &a, (int64_t)1 << 62))) utf8_array(&b, child, n, n, 0);
      word_schema(&b, &s, "+s", 0, "u", flags);
      break;
    case NULL_FORMAT:
      if ((child = struct_array(&b, &a, n))) utf8_array(&b, child, n, n, 0);
      word_schema(&b, &s, NULL, 0, "u", flags);
      break;
    case MISSING_BUFFERS:
      if ((child = struct_array(&b, &a, n))) init_array(&b, child, n, 1, 0); /* buffers[0]: NULL */
      word_schema(&b, &s, "+s", 0, "u", flags);
      break;
    case NULL_CHILD_POINTER:
      init_array(&b, &a, n, 1, 1); /* children[0] stays NULL */
      word_schema(&b, &s, "+s", 0, "u", flags);
      break;
    case INT32_COLUMN:
      if ((child = struct_array(&b, &a, n))) {
        Owned *o = init_array(&b, child, n, 2, 0);
        int32_t *values = own(&b, o, (size_t)n * sizeof(int32_t));
        if (values && child->buffers) {
          for (int64_t i = 0; i < n; i++) values[i] = 7;
          child->buffers[0] = NULL;
          child->buffers[1] = values;
        }
      }
      word_schema(&b, &s, "+s", 0, "i", flags);
      break;
    case DUPLICATE_NAMES: {
      Owned *o = init_array(&b, &a, n, 1, 2);
      if (o && a.children) {
        for (int i = 0; i < 2; i++) {
          a.children[i] = own(&b, o, sizeof(struct ArrowArray));
          if (a.children[i]) utf8_array(&b, a.children[i], n, n, 0);
        }
      }
      init_schema(&b, &s, "+s", NULL, 0, 2);
      for (int i = 0; i < 2 && s.n_children == 2; i++)
        if (s.children[i]) init_schema(&b, s.children[i], "u", "word", flags, 0);
      break;
    }
    case DICTIONARY:
      if ((child = struct_array(&b, &a, n)) && utf8_array(&b, child, n, n, 0)) {
        /* the dictionary struct lives with the parent, which outlives the child's release */
        child->dictionary = own(&b, a.private_data, sizeof(struct ArrowArray));
        if (child->dictionary) utf8_array(&b, child->dictionary, 1, 1, 0);
      }
      word_schema(&b, &s, "+s", 0, "u", flags);
      break;
    default:
      return fail(err, "c_hostile: no such fault");
  }
  if (b.failed) {
    if (a.release) a.release(&a);
    if (s.release) s.release(&s);
    return fail(err, "c_hostile: out of memory");
  }
  *out = a;
  *out_schema = s;
  return RUNNER_OK;
}

/* ---- the ABI ---- */

/* create and transform stay compiled when a -DHOSTILE_NULL_* build leaves them out of the table */
#ifdef __GNUC__
#define MAYBE_UNUSED __attribute__((unused))
#else
#define MAYBE_UNUSED
#endif

static int has(const uint8_t *config, size_t len, const char *needle) {
  return config && memmem(config, len, needle, strlen(needle)) != NULL;
}

MAYBE_UNUSED static int32_t create(const uint8_t *config, size_t len, uint32_t threads,
                                   void **state, RunnerError *err) {
  (void)threads;
  enum Fault fault = NONE;
  if (has(config, len, "\"fault\":")) {
    for (int f = NONE + 1; f < FAULT_COUNT; f++) {
      char needle[64];
      strcpy(needle, "\"fault\":\"");
      strcat(needle, FAULT_NAMES[f]);
      strcat(needle, "\"");
      if (has(config, len, needle)) fault = (enum Fault)f;
    }
    if (fault == NONE) return fail(err, "c_hostile: unknown fault in its config");
  }
  if (has(config, len, "\"hang\":\"create\""))
    for (;;) pause();
  State *s = malloc(sizeof *s);
  if (!s) return fail(err, "out of memory");
  s->fault = fault;
  s->in_finish = has(config, len, "\"in\":\"finish\"");
  s->hang_finish = has(config, len, "\"hang\":\"finish\"");
  *state = s;
  return RUNNER_OK;
}

MAYBE_UNUSED static int32_t transform(void *state, struct ArrowArray *in,
                                      const struct ArrowSchema *in_schema, struct ArrowArray *out,
                                      struct ArrowSchema *out_schema, RunnerError *err) {
  const State *s = state;
  int64_t n = in->length;
  int64_t flags = word_flags(in_schema);
  if (s->fault == INT32_COLUMN || s->fault == DUPLICATE_NAMES) {
    if (in->release) in->release(in);
    in->release = NULL;
    return misbehave(s->fault, n, flags, out, out_schema, err);
  }
  if (s->fault == NONE || s->in_finish || n <= 0)
    return pass_through(in, in_schema, out, out_schema, err);
  if (s->fault == COPIED_INPUT) {
    if (copy_schema(in_schema, out_schema) != 0) return fail(err, "cannot copy the schema");
    *out = *in; /* the mistake: in->release is left set, so both would be released */
    return RUNNER_OK;
  }
  if (s->fault == SHARED_SCHEMA) {
    *out = *in;
    in->release = NULL;
    *out_schema = *in_schema; /* the mistake: the host's schema, not a copy */
    return RUNNER_OK;
  }
  if (in->release) in->release(in); /* the input is not used: release it */
  in->release = NULL;
  return misbehave(s->fault, n, flags, out, out_schema, err);
}

static int32_t finish(void *state, struct ArrowArray *out, struct ArrowSchema *out_schema,
                      RunnerError *err) {
  const State *s = state;
  if (s->hang_finish)
    for (;;) pause();
  if (s->fault == NONE || !s->in_finish) return RUNNER_OK; /* out left released: no batch */
  return misbehave(s->fault, 3, ARROW_FLAG_NULLABLE, out, out_schema, err);
}

static void destroy(void *state) { free(state); }

#ifdef HOSTILE_NULL_CREATE
#define CREATE NULL
#else
#define CREATE create
#endif
#ifdef HOSTILE_NULL_TRANSFORM
#define TRANSFORM NULL
#else
#define TRANSFORM transform
#endif
#ifdef HOSTILE_SHORT_TABLE
#define STRUCT_SIZE 8u
#else
#define STRUCT_SIZE ((uint32_t)sizeof(RunnerPluginV1))
#endif

#ifdef HOSTILE_UNMAPPED_NAME
#define NAME ((const char *)0x1000)
#else
#define NAME "c_hostile"
#endif

MAYBE_UNUSED static const RunnerPluginV1 TABLE = {
    RUNNER_PLUGIN_ABI_VERSION, STRUCT_SIZE, NAME, "0.1.0",
    CREATE, TRANSFORM, finish, destroy,
};

uint32_t runner_plugin_abi_version(void) { return RUNNER_PLUGIN_ABI_VERSION; }
#ifdef HOSTILE_UNMAPPED_TABLE
const RunnerPluginV1 *runner_plugin_v1(void) { return (const RunnerPluginV1 *)0x1000; }
#else
const RunnerPluginV1 *runner_plugin_v1(void) { return &TABLE; }
#endif
