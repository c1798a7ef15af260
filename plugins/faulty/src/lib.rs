//! Misbehaves as `config: {fault: ...}` says, so the host's tests can check it survives:
//! `create-error`, `create-panic`, `transform-error`, `transform-panic`, `wrong-schema`,
//! `sometimes-wrong-schema` (the empty probe batch passes, data does not), `slow` (sleeps
//! `seconds` on every batch with rows, then passes it through), or none (pass-through).

use std::sync::Arc;

use runner_plugin::arrow_array::{Int64Array, RecordBatch};
use runner_plugin::arrow_schema::{DataType, Field, Schema};
use runner_plugin::{export_transform, serde_json, Transform};

pub struct Faulty {
    fault: String,
    seconds: f64,
}

impl Transform for Faulty {
    fn new(config: &serde_json::Value, _threads: usize) -> Result<Self, String> {
        let fault = config
            .get("fault")
            .and_then(|f| f.as_str())
            .unwrap_or("")
            .to_owned();
        match fault.as_str() {
            "create-error" => Err("this plugin refuses to start".into()),
            "create-panic" => panic!("boom in create"),
            _ => Ok(Faulty {
                fault,
                seconds: config
                    .get("seconds")
                    .and_then(|s| s.as_f64())
                    .unwrap_or(10.0),
            }),
        }
    }

    fn transform(&self, input: RecordBatch) -> Result<RecordBatch, String> {
        let numbers = || {
            let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
            RecordBatch::try_new(
                schema,
                vec![Arc::new(Int64Array::from(vec![1i64; input.num_rows()]))],
            )
            .map_err(|e| e.to_string())
        };
        match self.fault.as_str() {
            // Data-dependent failures: the empty batch runner sends at validation passes.
            "transform-error" if input.num_rows() > 0 => Err("cannot transform this batch".into()),
            "transform-panic" if input.num_rows() > 0 => panic!("boom in transform"),
            "wrong-schema" => numbers(),
            "sometimes-wrong-schema" if input.num_rows() > 0 => numbers(),
            "slow" if input.num_rows() > 0 => {
                std::thread::sleep(std::time::Duration::from_secs_f64(self.seconds));
                Ok(input)
            }
            _ => Ok(input),
        }
    }
}

export_transform!(Faulty, name = "faulty");
