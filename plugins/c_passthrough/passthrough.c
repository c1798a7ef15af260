/* A runner plugin in plain C: passes every batch through unchanged. It shows the ABI is
 * language-neutral: build it with
 *   cc -shared -fPIC -O2 -I plugins/sdk/include -o libc_passthrough.so plugins/c_passthrough/passthrough.c
 * and use it as `- {type: plugin, path: .../libc_passthrough.so}`. With `config: {"fail": true}`
 * its create returns an error, to show how errors cross the boundary. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdlib.h>
#include <string.h>

#include "runner_plugin.h"

static void release_schema(struct ArrowSchema *schema) {
  for (int64_t i = 0; i < schema->n_children; i++) {
    struct ArrowSchema *child = schema->children[i];
    if (child->release) child->release(child);
    free(child);
  }
  free(schema->children);
  free((void *)schema->format);
  free((void *)schema->name);
  schema->release = NULL;
}

/* The output schema must be owned by the plugin: a deep copy of the input's (no metadata). */
static int copy_schema(const struct ArrowSchema *from, struct ArrowSchema *to) {
  memset(to, 0, sizeof *to);
  to->format = strdup(from->format);
  to->name = from->name ? strdup(from->name) : NULL;
  to->flags = from->flags;
  to->n_children = from->n_children;
  to->release = release_schema;
  if (from->n_children > 0) {
    to->children = calloc((size_t)from->n_children, sizeof(struct ArrowSchema *));
    if (!to->children) return -1;
    for (int64_t i = 0; i < from->n_children; i++) {
      to->children[i] = malloc(sizeof(struct ArrowSchema));
      if (!to->children[i] || copy_schema(from->children[i], to->children[i]) != 0) return -1;
    }
  }
  return from->dictionary ? -1 : 0; /* dictionaries are not supported by this example */
}

static void release_static_error(RunnerError *err) { err->release = NULL; }

static int32_t fail(RunnerError *err, const char *message) {
  err->msg = (const uint8_t *)message;
  err->len = strlen(message);
  err->release = release_static_error;
  err->private_data = NULL;
  return RUNNER_ERROR;
}

static int32_t create(const uint8_t *config, size_t len, uint32_t threads, void **state, RunnerError *err) {
  (void)threads;
  if (config && len >= 13 && memmem(config, len, "\"fail\":true", 11)) {
    return fail(err, "asked to fail by its config");
  }
  *state = malloc(1);
  return *state ? RUNNER_OK : fail(err, "out of memory");
}

static int32_t transform(void *state, struct ArrowArray *in, const struct ArrowSchema *in_schema,
                         struct ArrowArray *out, struct ArrowSchema *out_schema, RunnerError *err) {
  (void)state;
  if (copy_schema(in_schema, out_schema) != 0) {
    if (out_schema->release) out_schema->release(out_schema);
    return fail(err, "cannot copy the schema");
  }
  *out = *in;         /* move the batch: its release callback stays the host's */
  in->release = NULL; /* the host's struct is now empty */
  return RUNNER_OK;
}

static void destroy(void *state) { free(state); }

static const RunnerPluginV1 TABLE = {
    RUNNER_PLUGIN_ABI_VERSION, sizeof(RunnerPluginV1), "c_passthrough", "0.1.0",
    create, transform, NULL, destroy,
};

uint32_t runner_plugin_abi_version(void) { return RUNNER_PLUGIN_ABI_VERSION; }
const RunnerPluginV1 *runner_plugin_v1(void) { return &TABLE; }
