//! `plugin`: a custom transform from a shared library (see `plugins/sdk`). The library is
//! loaded, its ABI version checked and its `create` run with `config:` when the pipeline is
//! validated, so a bad config fails before any data is read. The output columns are learnt by
//! sending the plugin an empty batch of the input schema; every later batch must have them.

use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::Deserialize;

use super::{BuildContext, BuildTransform, MapTransform, Stage, StageKind};
use crate::error::{Error, Result};
use crate::plugin::Instance;

/// Run a plugin.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The shared library (`.so`), relative to the pipeline file.
    #[serde(deserialize_with = "crate::config::env::path")]
    pub path: PathBuf,
    /// Passed to the plugin's `create` as JSON.
    #[serde(default)]
    pub config: serde_json::Value,
}

impl BuildTransform for PluginConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let path = crate::config::resolve_against(ctx.base_dir, &self.path);
        let plugin = crate::plugin::load(&path)?;
        let config = if self.config.is_null() {
            serde_json::json!({})
        } else {
            self.config.clone()
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let instance = plugin
            .create(&config, threads)
            .map_err(|e| format!("plugin {}: {e}", plugin.name))?;
        let probe = instance
            .transform(&RecordBatch::new_empty(ctx.input.clone()))
            .map_err(|e| format!("plugin {}: {e}", plugin.name))?;
        let output = probe.schema();
        Ok(Stage {
            output: output.clone(),
            kind: StageKind::Map(Box::new(PluginTransform {
                instance,
                name: plugin.name,
                output,
            })),
        })
    }
}

pub struct PluginTransform {
    instance: Instance,
    name: &'static str,
    output: SchemaRef,
}

impl PluginTransform {
    /// Every batch must have the columns the plugin announced when it was built.
    fn check(&self, out: RecordBatch) -> Result<RecordBatch> {
        if out.schema().fields() != self.output.fields() {
            let names = |s: &arrow_schema::Schema| {
                s.fields()
                    .iter()
                    .map(|f| format!("{} {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(Error::runtime(format!(
                "plugin {} returned columns ({}) but announced ({})",
                self.name,
                names(&out.schema()),
                names(&self.output)
            )));
        }
        Ok(out)
    }
}

impl MapTransform for PluginTransform {
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let out = self
            .instance
            .transform(batch)
            .map_err(|e| Error::runtime(format!("plugin {}: {e}", self.name)))?;
        self.check(out)
    }

    fn finish(&self) -> Result<Option<RecordBatch>> {
        match self
            .instance
            .finish()
            .map_err(|e| Error::runtime(format!("plugin {} (finish): {e}", self.name)))?
        {
            Some(out) => self.check(out).map(Some),
            None => Ok(None),
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
